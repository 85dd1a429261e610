# The two commands a new user needs:
#   make study   set up (once) and run the whole default study
#   make test    set up (once) and run the tests
# Everything runs inside .venv; set-up is skipped when nothing it depends on changed.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STUDY ?= default
STAMP := $(VENV)/.installed

export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONHASHSEED := 0

.PHONY: setup study snakemake test ui report clean-study help

help:
	@echo "make study        set up and run the default study (dvc repro -> snakemake)"
	@echo "make test         set up and run the tests"
	@echo "make study STUDY=smoke   any study named params/<study>.yaml"
	@echo "make ui           serve the MLflow UI on http://127.0.0.1:5000"

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

study: setup
	dvc repro study@$(STUDY)

snakemake: setup
	snakemake --profile workflow/profiles/default --config params=params/$(STUDY).yaml

test: setup
	$(BIN)/python -m pytest

ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --host 127.0.0.1 --port 5000 --workers 1 \
		--backend-store-uri sqlite:///mlflow.db

clean-study:
	rm -rf results/$(STUDY) logs/$(STUDY) reports/$(STUDY)
