# make run   - create .venv if missing, install the project, run the whole pipeline (dvc repro)
# make test  - same set-up, then the test suite
# TORCH_SPEC picks the torch build installed first when .venv has none. The default is the CPU
# wheel this project's CI machine holds on disk; with CUDA, e.g. TORCH_SPEC="torch==2.13.0"
# --index-url of your CUDA build, or install torch into .venv yourself before `make`.
.PHONY: install run test chat serve lint clean-outputs
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
export PATH := $(CURDIR)/$(BIN):$(PATH)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

run: install
	$(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest

chat: install
	$(BIN)/python -m pipeline chat "$(Q)"

serve: install
	$(BIN)/python -m pipeline serve

lint: install
	$(BIN)/ruff check pipeline flows tests benchmarks
