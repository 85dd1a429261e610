# The two commands a new user needs:
#   make study   set up (once) and run the whole default study
#   make test    set up (once) and run the tests
# Everything runs inside .venv; set-up is skipped when nothing it depends on changed.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STUDY ?= default
STAMP := $(VENV)/.installed

export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONHASHSEED := 0

.PHONY: setup study snakemake test test-scaleout ui report snakemake-report plots browser clean-study help

help:
	@echo "make study        set up and run the default study (dvc repro -> snakemake)"
	@echo "make test         set up and run the tests"
	@echo "make test-scaleout   SLURM, PostgreSQL-backed MLflow: real engines, started by the tests (root)"
	@echo "make study STUDY=smoke   any study named params/<study>.yaml"
	@echo "make ui           serve the MLflow UI on http://127.0.0.1:5000"
	@echo "make report       redraw the figures and reports/<study>/report.{md,html} (seconds, no training)"
	@echo "make snakemake-report   reports/<study>/snakemake-report.html: every figure, by stage"
	@echo "make plots        reports/<study>/dvc-plots/index.html: DVC plots, rendered offline"

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

study: setup
	@python workflow/scripts/register_study.py $(STUDY)
	dvc repro study@$(STUDY)

snakemake: setup
	python workflow/scripts/study.py --config params=params/$(STUDY).yaml

test: setup browser
	$(BIN)/python -m pytest

# The scale-out engines, for real: a one-node SLURM cluster (slurmctld, slurmd, slurmdbd on MariaDB,
# munge) and a PostgreSQL-backed MLflow server, started by the tests (tests/test_scaleout_*.py).
# Installs Debian's packages as root (or through passwordless sudo) and the pinned extras.
SCALEOUT_DEBS := slurmctld slurmd slurmdbd slurm-client munge mariadb-server postgresql
test-scaleout: setup
	@if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else echo "make test-scaleout: installing $(SCALEOUT_DEBS) needs root"; exit 1; fi; \
		dpkg -s $(SCALEOUT_DEBS) >/dev/null 2>&1 || { $$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SCALEOUT_DEBS) >/dev/null; }
	$(BIN)/python -m pip install --quiet $$($(BIN)/python workflow/scripts/extras.py scaleout)
	NEXTLAB_REQUIRE_SCALEOUT=1 $(BIN)/python -m pytest -m scaleout

# Headless Chromium for the MLflow UI test (tests/test_browser.py skips without it, except in CI,
# where .ci/run sets NEXTLAB_REQUIRE_BROWSER=1). Installs as root, or through passwordless sudo.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else echo "note: chromium is missing and installing it needs root: sudo apt-get install chromium"; exit 0; fi; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "note: could not install chromium; the browser test will be skipped"

ui: setup
	-@nextlab tracking links --params params/$(STUDY).yaml 2>/dev/null
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --host 127.0.0.1 --port 5000 --workers 1 \
		--backend-store-uri sqlite:///mlflow.db

report: setup
	nextlab report --params params/$(STUDY).yaml

snakemake-report: setup
	snakemake --profile workflow/profiles/default --config params=params/$(STUDY).yaml \
		--report reports/$(STUDY)/snakemake-report.html

plots: setup
	dvc plots show reports/$(STUDY)/plots --html-template workflow/report/dvc-plots.html \
		-o reports/$(STUDY)/dvc-plots

clean-study:
	rm -rf results/$(STUDY) logs/$(STUDY) reports/$(STUDY)
