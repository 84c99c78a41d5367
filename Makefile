# Two entry points for a fresh machine: `make demo` (set up + the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ifndef RUN  # evaluated once: every recipe line below must name the same run
RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)
endif

.PHONY: setup demo test bench clean-venv

$(BIN)/trm: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel on disk; a looser pin would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,plots]'
	@touch $@

setup: $(BIN)/trm

# The main job on its embedded default: generate 4x4 Sudoku, train sudoku4-cpu from scratch (about a minute:
# progress bar, then the final evaluation with exact accuracy and the checkpoint's path), then solve one
# held-out puzzle with it; then the shipped 9x9 model (models/, docs/models.md) on the first held-out 17-clue
# puzzle of its dataset, with --verify. DEMO_PRESET=sudoku6-cpu trains the 6x6 preset instead (about 10 minutes).
DEMO_PRESET ?= sudoku4-cpu
DEMO_9X9 ?= ........1........2..3..4........3.4..5...6...71...........8.9....5....6..2.17....
demo: setup
	$(BIN)/trm train --preset $(DEMO_PRESET) --out $(RUN)
	$(BIN)/trm solve --checkpoint $(RUN) --index 0 --trace
	$(BIN)/trm models
	$(BIN)/trm solve "$(DEMO_9X9)" --verify

# The browser test of trm serve needs Playwright and Debian's chromium: installed where this machine can (as
# root with apt-get), else that one test skips and says why.
test: setup
	-$(BIN)/pip install -q -e '.[browser]'
	-@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { timeout 600 apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { timeout 300 apt-get update -q >/dev/null 2>&1 && timeout 600 apt-get install -y -q chromium >/dev/null 2>&1; }; }; } \
	  || echo "chromium not installed: the browser test of trm serve will skip"
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/step_speed.py

clean-venv:
	rm -rf $(VENV)
