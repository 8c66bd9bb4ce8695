# The two commands in README.md: `make demo` (the main job) and `make test` (the test suite). Each builds
# .venv from nothing on a clean machine and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Reinstall when the dependencies change.
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?= -m "not slow"

.PHONY: demo test test-all install gen clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,models]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# The main job: the shipped demo bundle over its held-out images, on the board when there is one, else on
# the simulator (top-1, latency per image, speedup against dense attention, where the time goes).
demo: $(STAMP)
	$(BIN)/vitaccel run

# pytest exits 5 when it collected nothing: for us that means the suite is broken, so it fails too.
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-all: PYTEST_ARGS =
test-all: test

gen: $(STAMP)
	$(BIN)/vitaccel config gen

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
