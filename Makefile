# rnncli entry points. Everything installs into the active Python environment (a virtualenv if one
# is active, otherwise the user's Python); `make test` and `make demo` install first when needed.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .install-stamp

.PHONY: install test lint demo corpora bench bench-quality torch clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PIP) install -q -e ".[dev]"
	@# An editable install leaves the package as source: byte-compile it once, as a wheel's install does,
	@# so that a command does not compile ~45 modules at every start (~0.1 s) where bytecode is not written.
	$(PYTHON) -m compileall -q rnncli
	@echo "compiling the kernels a first run needs, on every core (a minute or two), so that it starts at once"
	$(PYTHON) -m rnncli.execution.precompile
	@touch $(STAMP)

# PyTorch is a test/bench reference only (parity tests, --vs-torch). Pin the CPU wheel.
torch:
	$(PIP) install -q "torch==2.13.0"

# The suite on every core (a file's tests on one worker: its fixtures are built once). Then, on a CPU
# with AVX-512, the kernel tests again compiled for one without (the packed products' 256-bit form);
# a CPU without AVX-512 ran that form already.
test: $(STAMP)
	$(PYTHON) -m pytest -n auto --dist loadfile
	@if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then \
	  echo "the kernel tests again, compiled for a CPU without AVX-512 (the packed products' 256-bit form)"; \
	  NUMBA_CPU_NAME=haswell NUMBA_CACHE_DIR="$$(mktemp -d)" $(PYTHON) -m pytest -q -n auto tests/test_kernels.py; \
	fi

lint: $(STAMP)
	$(PYTHON) -m ruff check rnncli tests bench corpora

# Train a small model on the bundled demo corpus, then sample from it and score two sentences.
demo: $(STAMP)
	$(PYTHON) -m rnncli train corpora/demo.txt --cell gru --hidden 128 --seq-len 64 --batch-size 16 --epochs 12 --out runs/demo.npz
	$(PYTHON) -m rnncli sample --model runs/demo.npz --temperature 0.8 --length 300 --seed 1
	$(PYTHON) -m rnncli score --model runs/demo.npz "The apple and pear salad was sweet." "The apple and pair salad was sweet."

corpora: $(STAMP)
	$(PYTHON) corpora/download.py

# Throughput side by side with PyTorch (when `make torch` installed it); JSON in bench/results/.
bench: $(STAMP)
	cd bench && $(PYTHON) engine.py --vs-torch
	cd bench && $(PYTHON) sample_score.py --vs-torch
	cd bench && $(PYTHON) process.py --vs-torch

# Validation loss on tiny-shakespeare after 300 s of training: rnncli, PyTorch, rnncli with its defaults (~17 minutes);
# then WikiText-2 test perplexity against pytorch/examples' word_language_model, same recipe (~10 minutes).
bench-quality: $(STAMP)
	cd bench && $(PYTHON) quality.py --vs-torch --defaults
	cd bench && $(PYTHON) wordlm.py

clean:
	rm -rf $(STAMP) .pytest_cache .ruff_cache build *.egg-info
	find rnncli -name '*.nbi' -delete -o -name '*.nbc' -delete  # Numba's compiled kernels
