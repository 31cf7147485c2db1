# The commands the README names. Every target installs what it needs first.
SHELL := /bin/bash
export OMP_NUM_THREADS ?= 2
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: setup demo test lint format bench

setup:  ## Python dependencies from the lock file (installs uv from PyPI when absent)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
	$(UV) sync --frozen

PORT ?= 8000

demo: setup  ## Score demo leads with the built-in model (trained on first use); `make demo PORT=8080` for another port
	$(UV) run leadscore demo --port $(PORT)

test: setup  ## The whole test suite against private PostgreSQL and Redis (scripts/test-services.sh), Debian's chromium and openssl (installed as root when absent); pytest's "no tests collected" (exit 5) fails too
	@{ command -v chromium && command -v openssl && command -v nginx && command -v pdftoppm; } >/dev/null 2>&1 || { [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  -o DPkg::Lock::Timeout=300 chromium openssl nginx poppler-utils >/dev/null; } || \
	  echo "make test: chromium, openssl, nginx or poppler-utils is missing and could not be installed (as root: apt-get install -y chromium openssl nginx poppler-utils); the browser tests, the Redis TLS test, the nginx deployment test and the PDF report test will fail" >&2
	@dir=$$(mktemp -d); \
	trap 'scripts/test-services.sh stop "$$dir" && rm -rf "$$dir"' EXIT; \
	trap 'exit 130' INT TERM HUP; \
	scripts/test-services.sh start "$$dir" || exit 1; \
	source "$$dir/env" || exit 1; \
	echo "$(UV) run pytest -q --durations=25"; \
	$(UV) run pytest -q --durations=25; status=$$?; \
	if [ $$status -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$status

lint: setup  ## ruff + mypy strict
	$(UV) run ruff check src tests benchmarks
	$(UV) run ruff format --check src tests benchmarks
	$(UV) run mypy

format: setup
	$(UV) run ruff format src tests benchmarks
	$(UV) run ruff check --fix src tests benchmarks

bench: setup  ## Every benchmark (about 20 min; the API load needs wrk, PostgreSQL and Redis); figures go to BENCHMARKS.md
	$(UV) run python benchmarks/engine_latency.py --tradeoff
	$(UV) run python benchmarks/build_times.py
	$(UV) run python benchmarks/quality.py
	$(UV) run python benchmarks/observability.py
	$(UV) run python benchmarks/file_scoring.py
	$(UV) run python benchmarks/request_split.py
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)
	$(UV) run python benchmarks/api_load.py
	$(UV) run python benchmarks/ws_fanout.py
	$(UV) run python benchmarks/leads_list.py
	$(UV) run python benchmarks/dashboard.py
