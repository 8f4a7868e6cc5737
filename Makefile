# pid-agent: the two commands a newcomer needs are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := build/demo.mp4

.PHONY: install run test bench lint clean faults fleet

install: $(BIN)/pid-agent

$(BIN)/pid-agent: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

$(DEMO): | $(BIN)/pid-agent
	$(BIN)/pid-agent make-demo $(DEMO)

run: install $(DEMO)
	$(BIN)/pid-agent replay $(DEMO) --config config/default.toml --fast --events build/events.jsonl

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run_all.py

lint: install
	$(BIN)/ruff check common agent drivers models station evaluation web tests bench scripts

clean:
	rm -rf build var .pytest_cache

# the long fault-injection run (issue 17): broker and agent killed, broker frozen; prints the fault table
faults: install
	mkdir -p build && rm -f build/faults.jsonl
	FAULTS_LONG=1 FAULTS_RESULTS=$(CURDIR)/build/faults.jsonl $(BIN)/python -m pytest -q -m faults tests/faults; \
	  status=$$?; $(BIN)/python tests/faults/report.py build/faults.jsonl; exit $$status

# the clustered-broker tests (a RabbitMQ cluster started on loopback; needs rabbitmq-server)
fleet: install
	FLEET=1 $(BIN)/python -m pytest -q -m fleet tests
