# Kuaxin: two commands. `make run` sets up and starts the service; `make test` sets up and tests.
SHELL := /bin/bash
PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
KX := $(VENV)/bin/kuaxin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

# The embedded default pipeline (override on the command line: make run FIRMS=20000).
FIRMS ?= 5000
SEED ?= 7
START ?= 2019-01
END ?= 2025-12
FAULT_RATE ?= 0.002
DATA ?= data
AS_OF ?= 2026-01-01
DATASET_FROM ?= 2020-01-01
DATASET_TO ?= 2025-01-01
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help venv browser data features dataset train promote monitor demo serve run buyers test test-fast lint bench fuzz clean mlflow-server ui

help:
	@echo "make run    set up everything and start the service with its portal on http://$(HOST):$(PORT)"
	@echo "make test   set up and run the test suite"

# Extras per use (pyproject.toml): the service and training for `make run`, everything for tests.
RUN_EXTRAS := serve,train
TEST_EXTRAS := serve,train,distributed,dev
# pip stays quiet: no version check, and the warnings a machine's own pip configuration causes
# (an extra index or find-links folder that does not exist here) are dropped, other errors kept.
PIP := PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 $(VENV)/bin/pip
PIP_FILTER := 2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2)

$(VENV)/bin/pip:
	@command -v $(PYTHON_BIN) >/dev/null || { echo "need $(PYTHON_BIN) on PATH"; exit 1; }
	$(PYTHON_BIN) -m venv $(VENV)
	@$(PIP) install --quiet --upgrade pip $(PIP_FILTER)

$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/pip
	@echo "installing kuaxin[$(RUN_EXTRAS)] into $(VENV)"
	@$(PIP) install --quiet -c constraints.txt -e ".[$(RUN_EXTRAS)]" $(PIP_FILTER)
	touch $(STAMP)

$(TEST_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/pip
	@echo "installing kuaxin[$(TEST_EXTRAS)] into $(VENV)"
	@$(PIP) install --quiet -c constraints.txt -e ".[$(TEST_EXTRAS)]" $(PIP_FILTER)
	touch $(STAMP) $(TEST_STAMP)

venv: $(STAMP)

# Debian's chromium (and a CJK font, so Chinese renders in screenshots) for the portal's browser
# tests; Playwright drives /usr/bin/chromium and never downloads a browser of its own.
browser:
	@if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi wenquanyi; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	  else echo "chromium or fonts missing: run 'sudo apt-get install chromium fonts-wqy-microhei' for the browser tests"; fi; \
	fi

$(DATA)/raw/.done: $(STAMP)
	$(KX) simulate --firms $(FIRMS) --seed $(SEED) --start $(START) --end $(END) --fault-rate $(FAULT_RATE) --out $(DATA)/raw --oracle-out $(DATA)/oracle
	touch $@

$(DATA)/clean/.done: $(DATA)/raw/.done
	$(KX) ingest $(DATA)/raw --out $(DATA)/clean
	touch $@

data: $(DATA)/clean/.done

$(DATA)/features/snapshot.parquet: $(DATA)/clean/.done
	$(KX) features $(DATA)/clean --as-of $(AS_OF) --out $@

$(DATA)/features/train.parquet: $(DATA)/clean/.done
	$(KX) dataset $(DATA)/clean --from $(DATASET_FROM) --to $(DATASET_TO) --every quarter --out $@

features: $(DATA)/features/snapshot.parquet
dataset: $(DATA)/features/train.parquet

$(DATA)/.trained: $(DATA)/features/train.parquet
	$(KX) train --dataset $(DATA)/features/train.parquet --oracle $(DATA)/oracle --metrics-out $(DATA)/metrics.json
	$(KX) promote
	$(KX) export --dest models
	touch $@

train: $(DATA)/.trained

# The champion backtested on the quarterly snapshots of the training set (data/monitor/report.html).
$(DATA)/monitor/report.html: $(DATA)/.trained
	$(KX) monitor --model models:/kuaxin-credit@champion --snapshots $(DATA)/features/train.parquet --outcomes $(DATA)/clean --out $(DATA)/monitor

monitor: $(DATA)/monitor/report.html

demo: $(DATA)/.trained $(DATA)/monitor/report.html $(DATA)/features/snapshot.parquet
	$(KX) db upgrade
	$(KX) demo --snapshot $(DATA)/features/snapshot.parquet --out $(DATA)/demo-keys.json

serve:
	$(KX) serve --host $(HOST) --port $(PORT) --snapshot $(DATA)/features/snapshot.parquet

run: demo
	$(MAKE) --no-print-directory serve

# MLflow tracking server backed by PostgreSQL (a database it creates on the local server) with
# an artifact root it serves over HTTP; point every command at it with
#   export MLFLOW_TRACKING_URI=http://$(MLFLOW_HOST):$(MLFLOW_PORT)
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
MLFLOW_DB ?= kuaxin_mlflow
MLFLOW_PG ?= postgresql://postgres@127.0.0.1:5432/postgres
MLFLOW_ARTIFACTS ?= mlartifacts-server
mlflow-server: $(STAMP)
	$(PY) -m training.tracking_server --admin-url $(MLFLOW_PG) --database $(MLFLOW_DB) --artifacts $(MLFLOW_ARTIFACTS) --host $(MLFLOW_HOST) --port $(MLFLOW_PORT)

# The MLflow UI on the local SQLite store the commands use by default (runs, metrics, the
# report and its plots under each run's artifacts, the registry's champion/previous aliases).
ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host $(MLFLOW_HOST) --port $(MLFLOW_PORT)
# Buyer grades: train, register and gate the buyer model, then grade every buyer as of AS_OF
# (serve with KUAXIN_BUYER_GRADES=$(DATA)/buyer_grades.parquet).
buyers: $(DATA)/buyer_grades.parquet

$(DATA)/buyer_grades.parquet: $(DATA)/clean/.done
	$(KX) buyers train --clean $(DATA)/clean --oracle $(DATA)/oracle --metrics-out $(DATA)/buyer_metrics.json
	$(KX) buyers score --clean $(DATA)/clean --as-of $(AS_OF) --out $@

# Two pytest workers (pytest-xdist), a test file per worker: much of the suite waits on servers,
# browsers and commits, so two processes fill two cores (TEST_WORKERS=0 runs in one process).
# PostgreSQL tests use a schema of their own each, so the workers never share one.
TEST_WORKERS ?= 2
TEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
# pytest exit code 5 means no test ran: that must fail, not pass.
test: $(TEST_STAMP) browser
	$(VENV)/bin/pytest -q $(TEST_PARALLEL) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing"; exit 1; fi; exit $$rc

# Schemathesis on the app's OpenAPI with 3,000 cases per database (the suite runs 300).
FUZZ_CASES ?= 3000
fuzz: $(TEST_STAMP)
	KUAXIN_FUZZ_CASES=$(FUZZ_CASES) $(VENV)/bin/pytest -q tests/serving/test_service_schemathesis.py

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy features simulator training tradefinance serving kuaxin

# Benchmarks (each writes benchmarks/results_<name>.md with date and machine; data under /tmp).
# They take minutes to tens of minutes: run them on a quiet machine.
bench: $(TEST_STAMP)
	$(PY) benchmarks/bench_simulate.py --sizes 2000 20000
	$(PY) benchmarks/bench_ingest.py --firms 20000 --fault-rate 0.01
	$(PY) benchmarks/bench_features.py --sizes 2000 20000
	$(PY) -m benchmarks.bench_train
	$(PY) benchmarks/bench_serving.py

clean:
	rm -rf $(DATA) mlflow.db mlruns mlartifacts mlartifacts-server kuaxin.db kuaxin.db-wal kuaxin.db-shm models/kuaxin-credit
