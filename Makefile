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

# Build 6x6 Sudoku, train the sudoku6-cpu preset for a few minutes (progress bar, then the final evaluation:
# exact accuracy and the checkpoint's path), then solve one held-out puzzle with it.
demo: setup
	$(BIN)/trm train --preset sudoku6-cpu --time-budget $${DEMO_MINUTES:-4} --out $(RUN)
	$(BIN)/trm solve --checkpoint $(RUN) --data data/sudoku6 --index 0

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/step_speed.py

clean-venv:
	rm -rf $(VENV)
