# Spymaster: the single entry point. `make help` lists the targets.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LAKE ?= ./lake
START ?= 2026-02-20
DAYS ?= 16
SCALE ?= 0.05
SEED ?= 7
PORT ?= 8000
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help install browser demo test test-slow lint typecheck bench bench-bronze bench-silver bench-gold bench-pipeline bench-query bench-learned bench-realsize bench-live bench-push bench-streams bench-scale evaluate lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/spymaster: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -c constraints.txt -e '.[dev]'
	@# uv writes no bytecode: without it every cold command compiles ~4 000 modules (seconds each run)
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	@touch $@

install: $(BIN)/spymaster ## Create .venv and install Spymaster with its pinned dependencies

demo: install ## Generate sample days (both DST changes, a roll week), run the pipeline and an evaluation, serve the page on localhost:$(PORT)
	$(BIN)/spymaster --lake $(LAKE) generate --start $(START) --days $(DAYS) --scale $(SCALE) --seed $(SEED)
	$(BIN)/spymaster --lake $(LAKE) generate --start 2026-10-29 --days 4 --scale $(SCALE) --seed $(SEED)
	$(BIN)/spymaster --lake $(LAKE) run --workers 2
	@# The page's Evaluation button shows this walk-forward report (kept on a second run)
	test -f $(LAKE)/reports/evaluation/latest.json || $(BIN)/spymaster --lake $(LAKE) evaluate --no-ablation
	$(BIN)/spymaster --lake $(LAKE) status
	$(BIN)/spymaster --lake $(LAKE) serve --port $(PORT)

browser: ## Debian chromium for the page's browser test (apt-get; needs root)
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; fi; }

test: install browser ## Run lint, type checks and the test suite (what CI runs)
	$(BIN)/ruff check common functions tests bench
	$(BIN)/ruff format --check common functions tests bench
	$(BIN)/mypy
	$(BIN)/pytest -m "not slow"

test-slow: install ## Run the slow tests too
	$(BIN)/pytest

lint: install ## ruff check + format check
	$(BIN)/ruff check common functions tests bench
	$(BIN)/ruff format --check common functions tests bench

typecheck: install ## mypy (strict on every package: common/spymaster and functions)
	$(BIN)/mypy

bench-bronze: install ## Bronze decode vs DBNStore.to_parquet on a full-scale generated day
	$(BIN)/python bench/bench_bronze.py --scale 1.0

bench-silver: install ## Silver seconds and peak RSS for one full-scale day on one core
	$(BIN)/python bench/bench_silver.py --scale 1.0

bench-gold: install ## Gold and vector-table figures over 20 generated days, one table vs 60
	$(BIN)/python bench/bench_gold_index.py --days 20 --scale 0.05

evaluate: install ## Walk-forward evaluation of the demo lake; the report lands in the lake
	$(BIN)/spymaster --lake $(LAKE) evaluate

bench-pipeline: install ## Full day raw → gold, 6 full-scale days with 1 vs 2 workers, API cold start on S3
	$(BIN)/python bench/bench_pipeline.py --scale 1.0 --days 6 --backfill-scale 1.0

bench-query: install ## Query latency in-process, ASGI and HTTP at demo size and 1 M episodes
	$(BIN)/python bench/bench_query.py

bench-learned: install ## The learned similarity: refit cost and query latency at 1 M episodes
	$(BIN)/python bench/bench_learned.py --episodes 1000000

bench-realsize: install ## Raw → gold + index per date at 1×, 3×, 5× scale: main's silver vs the step engine (peak RSS, wall)
	$(BIN)/python bench/bench_realsize.py --scales 1 3 5

bench-live: install ## Live engine: replay a full-scale day at 10×, lag and arrival → answer latency percentiles
	$(BIN)/python bench/bench_live.py --scale 1 --speed 10 --minutes 180
bench-push: install ## Live push hop latency: Hub.publish → SSE client over HTTP, 1 and 10 subscribers
	$(BIN)/python bench/bench_push.py

bench-streams: install ## The streams: per-date job, one projection fit, API answer latency (on LAKE)
	$(BIN)/python bench/bench_streams.py --lake $(LAKE)

bench-scale: install ## In-memory index at 1-2 M episodes vs the ANN path on LanceDB (disk, S3), extrapolated to 10 M
	$(BIN)/python bench/bench_scale.py --sizes 1000000 2000000 --ann-rows 50000 --ann-parts 4

bench: install ## Run every benchmark and regenerate docs/BENCHMARKS.md (≈ 40 min)
	$(BIN)/python bench/report.py

lock: ## Re-pin constraints.txt from the current .venv
	{ echo "# Versions checked to install together (pip check clean). Regenerate: make lock"; \
	  $(BIN)/uv pip freeze --python $(BIN)/python | grep -v -E "^(-e|spymaster)"; } > constraints.txt

clean: ## Remove the venv, the demo lake and caches
	rm -rf $(VENV) $(LAKE) .pytest_cache .mypy_cache .ruff_cache
