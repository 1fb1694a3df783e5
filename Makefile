# Set-up and the two main jobs. Everything lives in a local virtual environment, .venv/.
# torch is pinned first: an unpinned torch would pull the multi-GB CUDA build.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
DEMO_DIR := runs/demo
DEMO_MINUTES ?= 3

.PHONY: demo test chromium clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	touch $@

$(VENV)/.package: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.package
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# aeon only for its bundled UEA data files (Japanese Vowels); rnnkit never imports it
	$(BIN)/python -m pip install --quiet --no-deps aeon==1.6.0
	touch $@

# Train a small character-level LSTM on the bundled Shakespeare corpus for DEMO_MINUTES minutes,
# then sample from it.
demo: $(VENV)/.package
	rm -rf $(DEMO_DIR)
	$(BIN)/rnnkit train --corpus shakespeare --out $(DEMO_DIR) --minutes $(DEMO_MINUTES) \
		--cell lstm --layers 2 --hidden 256 --batch-size 32 --seq-len 64 --lr 3e-3 \
		--eval-every 200 --checkpoint-every 200
	$(BIN)/rnnkit sample $(DEMO_DIR) --length 600 --temperature 0.8 --seed 1 --prime "ROMEO:"

# The browser test opens an activation page in headless Chromium (Debian's chromium package).
# Install it where we can (as root, with apt-get); never fail here: without it that test skips.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; } \
		|| echo "chromium not installed: the browser test will be skipped"; }

test: $(VENV)/.dev chromium
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
