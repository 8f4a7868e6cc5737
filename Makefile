# pid-agent: the two commands a newcomer needs are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := build/demo.mp4

.PHONY: install run test bench lint clean

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

# FRIGATE=path/to/frigate adds the side-by-side row; the table also lands in build/bench.json
bench: install
	FRIGATE=$(FRIGATE) $(BIN)/python bench/run_all.py

lint: install
	$(BIN)/ruff check common agent drivers models station evaluation tests bench scripts

clean:
	rm -rf build var .pytest_cache
