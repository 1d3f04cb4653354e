# Two commands do everything on a fresh machine (Python 3.11+, git, make):
#   make run    the local stack (PostgreSQL, Temporal dev server + UI, worker) and a demo pathway
#   make test   lint, type-check, the whole test suite (starting every server it needs) and the
#               image check (the container image built and run as Kubernetes runs it)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint pytest image-check histories clean bench bench-costs bench-scale footprint storm ui-check record-scale task-search-scale

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[local,test]'
	touch $(STAMP)

# With ROP_WORKER_SANDBOX=true the sandbox imports the workflow's module afresh for every
# run; without a bytecode cache (PYTHONDONTWRITEBYTECODE) each import would compile it again.
BYTECODE := $(BIN)/python -m compileall -q rop_domain rop_runtime workflows activities starter bench nhn_local worker.py

install: $(STAMP)

run: $(STAMP)
	$(BYTECODE)
	$(BIN)/rop stack --local-nhn .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint pytest image-check

# The image as it ships (tests/image_check.py): podman and debootstrap from Debian's packages
# where missing, a base image from Debian's own packages (cached in .image-check/), the
# Dockerfile built unchanged, and a whole pathway through its locked-down containers.
image-check: $(STAMP)
	$(BIN)/python -m tests.image_check

# Record new replay histories beside the kept ones (which are never overwritten), after a
# change to the workflow's commands made with workflow.patched.
histories: $(STAMP)
	ROP_RECORD_HISTORIES=1 $(BIN)/pytest tests/test_pathway_workflow.py tests/test_follow_up.py \
		tests/test_integrity.py tests/test_dialogmelding.py

clean:
	rm -rf $(VENV) .rop .mypy_cache .ruff_cache .pytest_cache .image-check

# The benchmark (not a test): for each N of BENCH_N, N full pathways and N baselines on the
# local dev server, in ROUNDS alternating rounds.
BENCH_N ?= 30 100
ROUNDS ?= 3
bench: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m bench.pathways --pathways $(BENCH_N) --rounds $(ROUNDS)

# What each thing a pathway does costs the Temporal server (not a test): the local-activity
# floor plus one feature at a time (search-attribute upserts, timers, large answers, a patch).
bench-costs: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m bench.costs --pathways 200 --rounds 3

# Scaled out (not a test): two HTTP API processes, one then two workers, one of them killed.
SCALE_N ?= 60
bench-scale: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m bench.scale --pathways $(SCALE_N)

# What one pathway leaves behind (not a test): history, rows and bytes, CPU per step.
footprint: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m bench.footprint --pathways 200

# A clinician's reads at a region's size (not a test): N pathways' records through the step
# statement, then GET /tasks, GET /pathways and a FHIR bundle through the real API.
record-scale: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m bench.record_scale --pathways $(N)

# FHIR Task search at a region's size (not a test): 100,000 pathways, 500,000 tasks.
task-search-scale: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m bench.task_search_scale

# The deadline storm (not a test): N pathways whose meeting deadline passed before they
# started; BUSY CPU-bound processes beside the worker.
N ?= 30
BUSY ?= 0
storm: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m bench.storm --pathways $(N) --busy $(BUSY)

# The Temporal UI as operators see it (not part of `make test`: needs Debian's chromium):
# the local stack with the demo, screenshots of the list and the pathway's page in .ui-check/.
ui-check: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[local,test,ui]'
	$(BYTECODE)
	$(BIN)/python -m starter.ui_check --out .ui-check
