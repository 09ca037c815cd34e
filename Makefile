# The README's two commands. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test services bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The control plane on SQLite, the simulated lab nodes and an agent for this machine; prints the URL and login.
demo: $(BIN)/.installed
	$(BIN)/squads demo

services: $(BIN)/.installed
	$(BIN)/python scripts/ensure_services.py

# Lint and types first: both pass today, and this keeps them that way.
test: $(BIN)/.installed services
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(BIN)/.installed services
	$(BIN)/python benchmarks/policy_bench.py
	$(BIN)/python benchmarks/audit_bench.py
	$(BIN)/python benchmarks/eval_bench.py
	$(BIN)/python benchmarks/roundtrip_bench.py
	$(BIN)/python benchmarks/scale_bench.py
	$(BIN)/python benchmarks/startup_bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
