# Set-up is two commands: `make run` and `make test`. Both install what is
# missing (a virtualenv in .venv) and fetch and prepare the model first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Weights and compiled caches live outside the checkout.
export MATTE_CACHE_DIR ?= $(HOME)/.cache/matte
# pymatting compiles with numba; its cache must be writable and shared by set-up and serving.
export NUMBA_CACHE_DIR ?= $(MATTE_CACHE_DIR)/numba

.PHONY: install model model-int8 run test lint bench mutation clean services

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Matte needs Python 3.11+"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[prepare,test]'
	@touch $@

install: $(VENV)/.installed

# Idempotent: a second run checks a stamp and returns at once.
model: install
	$(PY) models/fetch.py --cache-dir "$(MATTE_CACHE_DIR)"
	$(PY) -m server warm-up

# The opt-in fast CPU model (MATTE_PRECISION=int8): calibration takes ~100 s and ~4 GB.
model-int8: model
	$(PY) models/quantize.py --cache-dir "$(MATTE_CACHE_DIR)"

run: model
	$(PY) -m server serve

# PostgreSQL's server binaries for the storage tests, which start their own
# throwaway cluster (Debian keeps initdb off PATH, hence the glob), and
# redis-server for the shared rate limit's tests (their own throwaway server),
# chromium with its chromedriver for the web page's browser tests (tests/browser/),
# and prometheus (with promtool) for the scrape test and the deploy/ checks.
services:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends postgresql)
	@command -v redis-server >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends redis-server)
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends chromium chromium-driver)
	@command -v prometheus >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends prometheus)

# REQUIRE_SERVICES: the PostgreSQL, Redis, browser and Prometheus tests fail rather than skip
# when what they need is missing.
test: model model-int8 services
	REQUIRE_SERVICES=1 $(PY) -m pytest

# mypy --strict; models/ and benchmarks/ are script folders (their files import
# each other by bare name), so each is checked on its own path.
lint: install
	$(PY) -m ruff check server tests models benchmarks
	$(PY) -m mypy server tests
	MYPYPATH=models $(PY) -m mypy models/*.py
	MYPYPATH=benchmarks $(PY) -m mypy benchmarks/*.py

bench: model
	$(PY) benchmarks/run.py

$(VENV)/.mutation: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[mutation]'
	@touch $@

# Mutation testing of the modules that guard the contract, on the fast tests
# (~25 min on 2 cores; not in CI). A fresh run each time, so no verdict is stale.
# Writes benchmarks/MUTATION.md; fails under 90% or with an unexplained survivor.
mutation: $(VENV)/.mutation
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children $$(nproc)
	$(PY) benchmarks/mutation.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache mutants
