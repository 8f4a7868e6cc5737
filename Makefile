# pid-agent: the two commands a newcomer needs are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := build/demo.mp4

.PHONY: install run test bench lint clean faults fleet fleet-load soak dist

install: $(BIN)/pid-agent

INSTALL_LOG := build/install.log

# constraints.txt: the versions the suite passed with; pip's output goes to build/install.log, one line per step here
$(BIN)/pid-agent: setup.cfg pyproject.toml constraints.txt
	@mkdir -p build
	@echo "install: creating $(VENV) (pip output in $(INSTALL_LOG))"
	@$(PYTHON) -m venv $(VENV) > $(INSTALL_LOG) 2>&1 || { tail -20 $(INSTALL_LOG); exit 1; }
	@$(BIN)/pip install --upgrade pip >> $(INSTALL_LOG) 2>&1 || { tail -20 $(INSTALL_LOG); exit 1; }
	@echo "install: pid-agent and its dependencies, pinned by constraints.txt"
	@$(BIN)/pip install -c constraints.txt -e '.[dev]' >> $(INSTALL_LOG) 2>&1 || { tail -20 $(INSTALL_LOG); exit 1; }
	@touch $@

$(DEMO): | $(BIN)/pid-agent
	@echo "run: rendering the demo recording $(DEMO)"
	@$(BIN)/pid-agent make-demo $(DEMO) > /dev/null

run: install $(DEMO)
	@echo "run: replaying $(DEMO) through the agent (events in build/events.jsonl)"
	@$(BIN)/pid-agent replay $(DEMO) --config config/default.toml --fast --events build/events.jsonl

test: install
	$(BIN)/python -m pytest -q

# FRIGATE=path/to/frigate (a Frigate source tree, loaded at bench time, never copied in) adds the side-by-side rows
# with Frigate's motion detector, which needs scipy (the `bench` extra); the table also lands in build/bench.json
bench: install $(if $(FRIGATE),$(VENV)/.bench-extra)
	FRIGATE=$(FRIGATE) $(BIN)/python bench/run_all.py

$(VENV)/.bench-extra: setup.cfg constraints.txt | $(BIN)/pid-agent
	@echo "bench: the bench extra (scipy, for Frigate's detector), pinned by constraints.txt"
	@$(BIN)/pip install -c constraints.txt -e '.[dev,bench]' >> $(INSTALL_LOG) 2>&1 || { tail -20 $(INSTALL_LOG); exit 1; }
	@touch $@

lint: install
	$(BIN)/ruff check common agent drivers models station evaluation web tests bench scripts

clean:
	rm -rf build var .pytest_cache

# the long fault-injection run (issue 17): broker and agent killed, broker frozen, camera errors/stalls/freezes,
# clock steps, garbage on every input, and the self-test against a broken outbox; prints the fault table
faults: install
	mkdir -p build && rm -f build/faults.jsonl
	FAULTS_LONG=1 FAULTS_RESULTS=$(CURDIR)/build/faults.jsonl $(BIN)/python -m pytest -q -m faults tests/faults; \
	  status=$$?; $(BIN)/python tests/faults/report.py build/faults.jsonl; exit $$status

# the clustered-broker tests (a RabbitMQ cluster started on loopback; needs rabbitmq-server)
fleet: install
	FLEET=1 $(BIN)/python -m pytest -q -m fleet tests

# 500 simulated units (real MQTT connections) against a mosquitto on loopback, and with CLUSTER=1 also against a
# 3-node RabbitMQ cluster (needs rabbitmq-server); per-unit delivery, loss, alarm latency: one table per broker
fleet-load: install
	$(BIN)/python bench/fleet_load.py $(if $(CLUSTER),--cluster)

# the demo replayed in a loop through one agent (full speed, sending to a local mosquitto and a station process) for
# SOAK_MINUTES (default 10; the issue's figure is 120); RSS/fds/threads/outbox/heartbeats, plot in build/soak.png.
# As a marked test (CI's ten minutes): SOAK_MINUTES=10 pytest -m soak tests/faults/test_soak.py
soak: install
	mkdir -p build
	SOAK_MINUTES=$(or $(SOAK_MINUTES),10) $(BIN)/python bench/soak.py --plot build/soak.png

# the agent's wheel and its dependencies' (no internet on site); UNIT=config.toml [CERTS=dir] [KEYS=dir] also
# assembles that unit's provisioning bundle in build/dist/bundle (scripts/provision BUNDLE installs it)
dist: install
	rm -rf build/dist && mkdir -p build/dist/wheels
	$(BIN)/pip wheel -q -c constraints.txt . -w build/dist/wheels
	if [ -n "$(UNIT)" ]; then $(BIN)/python scripts/make-bundle $(UNIT) --wheels build/dist/wheels \
	  $(if $(CERTS),--certs $(CERTS)) $(if $(KEYS),--keys $(KEYS)) --out build/dist/bundle; fi
