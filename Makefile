# Everyone's entry points. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser dev test test-unit lint typecheck bench bench-peers fuzz chaos openapi up up-cluster down clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Slipstream needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Spans are kept in Postgres, so the dashboard's run page shows each run's trace.
dev: install
	SLIPSTREAM_OTEL_EXPORTER=$${SLIPSTREAM_OTEL_EXPORTER:-postgres} $(BIN)/slipstream dev --tasks examples --trigger hello-world

test: install browser
	$(BIN)/python -m pytest -q tests

# A headless Chromium and its driver for the browser tests (Debian's packages; tools that fetch
# their own browser do not work here). Needs root and apt, as on our machines.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver >/dev/null || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; }

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/ruff check proto libs services tests bench examples

typecheck: install
	$(BIN)/mypy proto libs services

bench: install
	$(BIN)/python bench/run.py --out docs/benchmarks.md
	$(BIN)/python bench/timers.py --out docs/benchmarks.md
	$(BIN)/python bench/queues.py --out docs/benchmarks.md
	$(BIN)/python bench/run_lists.py --out docs/benchmarks.md
	$(BIN)/python bench/realtime.py --out docs/benchmarks.md
	$(BIN)/python bench/batches.py --out docs/benchmarks.md
	$(BIN)/python bench/payloads.py --out docs/benchmarks.md
	$(BIN)/python bench/dashboard.py --out docs/benchmarks.md
	$(BIN)/python bench/scaleout.py --out docs/benchmarks.md

# The chaos suite at full size: 10,000 runs of a mixed load over a NATS cluster and replicas of
# every service while each is killed in turn (make test runs it with 300).
chaos: install
	SLIPSTREAM_CHAOS_RUNS=$${SLIPSTREAM_CHAOS_RUNS:-10000} SLIPSTREAM_CHAOS_SECONDS=$${SLIPSTREAM_CHAOS_SECONDS:-150} \
		$(BIN)/python -m pytest -q -s tests/chaos

# The HTTP API under schemathesis (tests/e2e/test_fuzzing.py, which `make test` runs on 15 examples):
# 200 examples an operation, a new seed each time.
fuzz: install
	SLIPSTREAM_FUZZ_EXAMPLES=200 SLIPSTREAM_FUZZ_SEED=$$(date +%s) $(BIN)/python -m pytest -q tests/e2e/test_fuzzing.py

# Celery and taskiq in their own venv under .slipstream/, Redis from Debian's package.
bench-peers: install
	$(BIN)/python bench/peers.py --out docs/benchmarks.md

openapi: install
	$(BIN)/python -m slipstream_cli.main gen-contract

up:
	docker compose up --build -d

# The clustered profile: three NATS nodes and replicas of each service (docs/operations.md).
up-cluster:
	docker compose -f compose.yaml -f compose.cluster.yaml up --build -d

down:
	docker compose down

clean:
	rm -rf $(VENV) .slipstream
