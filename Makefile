# rnncli entry points. Everything installs into the active Python environment (a virtualenv if one
# is active, otherwise the user's Python); `make test` and `make demo` install first when needed.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .install-stamp

.PHONY: install test lint demo corpora bench bench-torch torch clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PIP) install -q -e ".[dev]"
	@touch $(STAMP)

# PyTorch is a test/bench reference only (parity tests, --vs-torch). Pin the CPU wheel.
torch:
	$(PIP) install -q "torch==2.13.0"

test: $(STAMP)
	$(PYTHON) -m pytest

lint: $(STAMP)
	$(PYTHON) -m ruff check rnncli tests bench corpora

demo: $(STAMP)
	$(PYTHON) -m rnncli tokenize corpora/demo.txt --level word --show 10

corpora: $(STAMP)
	$(PYTHON) corpora/download.py

bench: $(STAMP)
	@echo "no benchmarks yet"

clean:
	rm -rf $(STAMP) .pytest_cache .ruff_cache build *.egg-info
