# SchoolGuide: the project's front door. `make run` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install

# Rasa 3.6 needs Python 3.10 exactly. Use PYTHON=... if given, else a python3.10 that really runs (pyenv shims
# may exist but refuse), else any $(pyenv root)/versions/3.10.*/bin/python.
is_py310 = $(shell $(1) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1 && echo yes)
ifndef PYTHON
  ifeq ($(call is_py310,python3.10),yes)
    PYTHON := python3.10
  else
    PYENV_ROOT_DIR := $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
    PYTHON := $(firstword $(foreach p,$(sort $(wildcard $(PYENV_ROOT_DIR)/versions/3.10.*/bin/python)),$(if $(call is_py310,$(p)),$(p))))
  endif
endif

.PHONY: help python venv nlp train run shell test check validate pytest test-conversations eval gate spread e2e bench lint clean

help:
	@echo "SchoolGuide. Main commands:"
	@echo "  make run     set up, train if needed, start Rasa (5005) + action server (5055)"
	@echo "               + the DSL's desk on http://127.0.0.1:5080 (SCHOOLGUIDE_DESK_HOST/_PORT)"
	@echo "  make test    set up, then knowledge check, data validation, pytest, test conversations, quality gates"
	@echo "Also: make train | shell | eval | spread | e2e | bench | lint | clean"

python:
	@if [ -z "$(PYTHON)" ] || [ "$(call is_py310,$(PYTHON))" != "yes" ]; then \
	  echo "error: SchoolGuide needs Python 3.10 (Rasa 3.6 does not run on 3.11+)." >&2; \
	  echo "  Install it, e.g. 'pyenv install 3.10' or 'apt-get install python3.10 python3.10-venv'," >&2; \
	  echo "  then run make again (or point to it: make run PYTHON=/path/to/python3.10)." >&2; \
	  exit 1; fi

$(STAMP): pyproject.toml | python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23,<25" wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

venv: $(STAMP)

nlp: venv
	$(BIN)/schoolguide build-nlp

train: nlp
	$(BIN)/schoolguide train

run: venv
	$(BIN)/schoolguide run

# Talk to the assistant in the terminal (starts the action server in the background). Both listen on loopback
# only; the action server takes its secret from the settings, as var/endpoints.yml (written first) does.
shell: train
	@$(BIN)/schoolguide endpoints >/dev/null
	@$(BIN)/python -m bot.action_server --actions actions --port "$${SCHOOLGUIDE_ACTION_PORT:-5055}" \
	  >var/action-server.log 2>&1 & pid=$$!; \
	  trap "kill $$pid" EXIT; \
	  $(BIN)/rasa shell --interface 127.0.0.1 --model "$$($(BIN)/schoolguide model-path)" \
	    --endpoints var/endpoints.yml

test: train check validate pytest test-conversations gate

check: venv
	$(BIN)/schoolguide knowledge check

validate: venv
	$(BIN)/rasa data validate --fail-on-warnings --config config.yml --domain domain.yml --data data

pytest: train
	$(BIN)/python -m pytest -q

test-conversations: train
	$(BIN)/rasa test core --model "$$($(BIN)/schoolguide model-path)" --stories tests/conversations \
	  --fail-on-prediction-errors --out reports/rasa-test

eval: train
	$(BIN)/schoolguide eval

# Quality gate (part of make test): held-out topic accuracy and grounding >= 90%, well above BM25;
# disclosure recall 100%, false escalations <= 10%.
gate: train
	$(BIN)/schoolguide eval --gate

# How far the held-out scores move with the seed and the CPU's code paths (reports/spread.json; ~40 min on
# 2 cores). Every gate above must sit at or below the worst case it records (tests/test_spread.py).
spread: nlp
	$(BIN)/schoolguide spread

e2e: train
	$(BIN)/python -m pytest -q -m e2e

bench: nlp
	$(BIN)/schoolguide bench

lint: venv
	$(BIN)/ruff check bot actions tests
	$(BIN)/ruff format --check bot actions tests

clean:
	rm -rf $(VENV) models var reports/rasa-test .pytest_cache .rasa results
