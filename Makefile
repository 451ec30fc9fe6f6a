# make run   - create .venv if missing, install the project, run the whole pipeline (dvc repro)
# make test  - same set-up, then the test suite (without the team tier)
# make test-team - the team tier: tests/team/ against a real stack of its own (docs/team.md)
# make run PROFILE=configs/qwen2.5-7b-qlora.yaml - the same with a profile's params written into
#              params.yaml (comments kept), run as a DVC experiment (configs/run_profile.py)
# TORCH_SPEC picks the torch build installed first when .venv has none. The default is the CPU
# wheel this project's CI machine holds on disk; with CUDA, e.g. TORCH_SPEC="torch==2.13.0"
# --extra-index-url of your CUDA build, or install torch into .venv yourself before `make`.
#
# Servers (each runs in the foreground; one terminal each), bound to HOST (127.0.0.1) by default:
# make mlflow-server   - MLflow tracking + registry on MLFLOW_PORT (sqlite and artifacts in mlflow/)
# make prefect-server  - Prefect API + UI on PREFECT_PORT (its database in .prefect/)
# make prefect-worker  - a process worker on the WORK_POOL work pool
# make deploy          - create the work pool and the training concurrency limit, deploy prefect.yaml
# make nightly         - trigger one run of the nightly deployment now
# make team-up         - a team's stack on loopback under .team/ (docs/team.md); then `. .team/env`
# make team-down       - stop what team-up started (the data stays)
.PHONY: install run test chat serve lint clean-outputs mlflow-server prefect-server prefect-worker \
	deploy nightly team-up team-down test-team test-unit
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= torch==$(TORCH_VERSION)
PIP_SPEC ?= pip==26.3
UV_SPEC ?= uv==0.13.9
LOCK := requirements.lock
export PATH := $(CURDIR)/$(BIN):$(PATH)
HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200
# A team's shared server: export PREFECT_API_URL (and MLFLOW_TRACKING_URI) before `make`.
PREFECT_API_URL ?= http://$(HOST):$(PREFECT_PORT)/api
WORK_POOL ?= medical-process
TRAINING_LIMIT ?= qwen-medical-training
DEPLOYMENT ?= qwen-medical-nightly/nightly-retrain
PREFECT_CLIENT := PREFECT_API_URL=$(PREFECT_API_URL) $(BIN)/prefect

install: $(VENV)/.installed

# make install puts in exactly the versions in requirements.lock (docs/install.md): it refuses a
# lock older than pyproject.toml, puts torch in first (kept out of the lock with its CUDA wheels)
# with its own dependencies held to the lock's versions, then every locked version with --no-deps
# (nothing resolved anew), the project itself, and pip check.
$(VENV)/.installed: pyproject.toml $(LOCK)
	@$(PYTHON) tools/lock.py check
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(PIP_SPEC)"
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet -c $(LOCK) $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	@touch $@

# make lock  - rewrite requirements.lock after any edit of pyproject's dependencies (uv, ~15 s);
#              LOCK_ARGS=--upgrade moves every pin to the newest release the ranges accept
.PHONY: lock
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet "$(UV_SPEC)"
	$(BIN)/python tools/lock.py write --uv $(BIN)/uv --torch torch==$(TORCH_VERSION) $(LOCK_ARGS)

run: install
ifdef PROFILE
	$(BIN)/python configs/run_profile.py $(PROFILE)
else
	$(BIN)/dvc repro
endif

# TEST_WORKERS: pytest-xdist processes, one per core (docs/testing.md); 0 runs in one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -m "not team" -n $(TEST_WORKERS) --dist worksteal

# The inner loop: unit tests without the slow (end-to-end, DVC-driven) and team tiers, on one
# xdist worker per core by default (UNIT_WORKERS=0: one process)
UNIT_WORKERS ?= 2
test-unit: install
	$(BIN)/python -m pytest -m "not slow and not team" -n $(UNIT_WORKERS) --dist worksteal tests/unit

# The team tier: starts PostgreSQL, S3, MLflow and Prefect servers of its own (docs/team.md)
test-team: install
	$(BIN)/python -m pytest -m team

chat: install
	$(BIN)/python -m pipeline chat "$(Q)"

serve: install
	$(BIN)/python -m pipeline serve

lint: install
	$(BIN)/ruff check pipeline flows tests benchmarks configs docs tools team data

# MLFLOW_JOBS=false: no background job runner (MLflow's GenAI jobs, unused here); with it, mlflow
# server starts seven more processes that poll (about 25 CPU-s more in its first 90 s idle).
MLFLOW_JOBS ?= false
mlflow-server: install
	@mkdir -p mlflow/server-artifacts
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$(MLFLOW_JOBS) $(BIN)/mlflow server --host $(HOST) --port $(MLFLOW_PORT) --workers 1 \
		--backend-store-uri sqlite:///mlflow/server.db --artifacts-destination mlflow/server-artifacts

prefect-server: install
	PREFECT_HOME=$(CURDIR)/.prefect PREFECT_SERVER_API_HOST=$(HOST) \
		PREFECT_SERVER_ANALYTICS_ENABLED=false \
		$(BIN)/prefect server start --host $(HOST) --port $(PREFECT_PORT)

prefect-worker: install
	$(PREFECT_CLIENT) worker start --pool $(WORK_POOL) --type process

deploy: install
	$(PREFECT_CLIENT) work-pool inspect $(WORK_POOL) >/dev/null 2>&1 || \
		$(PREFECT_CLIENT) work-pool create $(WORK_POOL) --type process
	$(PREFECT_CLIENT) global-concurrency-limit inspect $(TRAINING_LIMIT) >/dev/null 2>&1 || \
		$(PREFECT_CLIENT) global-concurrency-limit create $(TRAINING_LIMIT) --limit 1
	$(PREFECT_CLIENT) --no-prompt deploy --name nightly-retrain

nightly: install
	$(PREFECT_CLIENT) deployment run $(DEPLOYMENT)

team-up: install
	$(BIN)/python -m team up

team-down:
	$(BIN)/python -m team down
