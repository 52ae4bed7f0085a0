# vidspark: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# spark-submit finds its Spark through the python on PATH: put the virtualenv first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
SHARED_WEIGHTS ?= ../shared/models/inception_v3_notop_imagenet_partial.weights.h5
DEMO_DATA ?= data/demo
# The demo uses the offline weights file when it exists, otherwise Keras' ImageNet download.
DEMO_WEIGHTS := $(if $(wildcard $(SHARED_WEIGHTS)),$(abspath $(SHARED_WEIGHTS)),imagenet)
ARGS ?=
PYTEST_ARGS ?=
# test processes side by side (pytest-xdist; each test module stays in one of them, the longest
# first: tests/conftest.py orders them, and xdist keeps that order); 0: one process
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

EVAL_DATA ?= ../shared/data/fights

.PHONY: help install demo demo-data report sql-server browser test test-fast test-scale bench eval package clean
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: setup.py vidspark/session.py vidspark/jvm/ReadOnlyExtension.java
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m vidspark.session --install-jars --write-spark-defaults
	touch $@

install: $(VENV)/.installed  ## create .venv, install vidspark with its pinned dependencies and Delta's jars

demo-data: install  ## generate the built-in demo videos and labels under data/demo
	$(VENV)/bin/vidspark demo-data --out $(DEMO_DATA)

demo: demo-data  ## install, generate the demo videos, run the nightly job on them
	$(VENV)/bin/vidspark nightly --config conf/demo.yaml --set featurizer.weights=$(DEMO_WEIGHTS) $(ARGS)

report:  ## write the demo's HTML report (run `make demo` first); ARGS="--out FILE --top N"
	$(VENV)/bin/vidspark report --config conf/demo.yaml $(ARGS)

sql-server: install  ## serve the demo's tables read-only over JDBC/ODBC on localhost:10000 (Ctrl-C stops)
	$(VENV)/bin/vidspark sql-server --config conf/demo.yaml $(ARGS)

# The report test renders the page in headless Chromium: Debian's package when none is found.
CHROMIUM := $(firstword $(shell command -v $${VIDSPARK_CHROMIUM:-chromium} chromium chromium-browser google-chrome 2>/dev/null))
browser:  ## install Debian's chromium (needs root and apt) unless a Chromium is already found
ifeq ($(CHROMIUM),)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "make browser: no Chromium found; install one (Debian: apt-get install chromium) or set VIDSPARK_CHROMIUM"; fi
else
	@echo "Chromium: $(CHROMIUM)"
endif

test: install browser  ## run the test suite (what CI runs)
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: install browser  ## the test suite without the slow tests
	$(PY) -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

test-scale: install  ## only the scale tests (2-hour video, 500 videos, 1080p in 512 MB); also part of `make test`
	$(PY) -m pytest -m scale -s $(PYTEST_ARGS)

bench: install  ## run the benchmarks (~90 min; the camera footage is made once, ~15 min): bench/results.*, README's tables
	$(PY) -m vidspark_bench.bench --out bench --weights $(DEMO_WEIGHTS) --readme README.md $(ARGS)

eval: install  ## camera-grouped quality on ../shared/data/fights (~10 min): eval/results.*, README's table
	PYSPARK_SUBMIT_ARGS="--driver-memory 4g pyspark-shell" $(PY) -m vidspark_bench.evaluate --data $(EVAL_DATA) --weights $(DEMO_WEIGHTS) --readme README.md $(ARGS)

package:  ## build dist/vidspark-env.tar.gz: a packed virtualenv to ship with spark-submit --archives
	rm -rf build/package-venv dist/vidspark-env.tar.gz
	$(PYTHON) -m venv build/package-venv
	build/package-venv/bin/python -m pip install --quiet --upgrade pip
	build/package-venv/bin/python -m pip install --quiet . venv-pack==0.2.0
	mkdir -p dist
	build/package-venv/bin/venv-pack -p build/package-venv -o dist/vidspark-env.tar.gz
	@ls -lh dist/vidspark-env.tar.gz

clean:  ## remove generated data and build outputs (keeps .venv)
	rm -rf data build dist spark-warehouse .pytest_cache
