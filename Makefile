# The README's two commands are the contract: `make up` runs the whole system, `make test` proves it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.bench-installed

# The venv's bin first, so `temporal` and `temporal-test-server` are the pinned ones.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: screenshots
.PHONY: up up-split test test-fast mutation lint format bench bench-install bench-api bench-activity bench-read bench-customers bench-history bench-idle bench-styles bench-observability bench-tracing chaos load rebuild-projections token audit-verify clean install

up: $(INSTALLED)
	$(BIN)/python -m devstack

# The same stack with one worker process per service, as production runs it.
up-split: $(INSTALLED)
	$(BIN)/python -m devstack --split

# Drop the read side's projections and replay every order event into them.
rebuild-projections: $(INSTALLED)
	$(BIN)/python -m services.readmodel.rebuild

# A customer's bearer token, or a named operator's, signed with the API's secret
# (CLOUDMART_AUTH_SECRET, or the one `make up` keeps in the data directory):
# make token CUSTOMER=c-42, or make token OPERATOR=alice
token: $(INSTALLED)
	@test -n "$(CUSTOMER)$(OPERATOR)" || { echo "usage: make token CUSTOMER=<customer id> | OPERATOR=<name>" >&2; exit 2; }
	@$(BIN)/python -m api.tokens $(if $(CUSTOMER),'$(CUSTOMER)') $(if $(OPERATOR),--operator '$(OPERATOR)')

# The README's pictures of the console (docs/images/), taken from a stack of its own in Chromium.
screenshots: $(INSTALLED)
	$(BIN)/python -m devstack.screenshots

# Walk the audit log's hash chain: exit 0 with the count, 1 naming the first broken entry.
audit-verify: $(INSTALLED)
	$(BIN)/python -m services.audit.verify

# Three pytest processes on two cores: most of a test's time is spent waiting on a server, a
# worker or a timer, so a third process still gains over two (docs/testing.md). Work stealing
# keeps the long system tests from queueing behind each other at the end. TEST_WORKERS=0 runs
# it in this one process.
TEST_WORKERS ?= 3

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The unit and workflow tiers: pure logic and the saga on the time-skipping server (under a
# minute). `make test` runs every tier (docs/testing.md).
test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal tests/unit tests/workflows $(PYTEST_ARGS)

# Mutation testing of the security-critical modules (auth, tokens, the payload codec, the codec
# server, the body size limit) against the fast in-process tests, from scratch each time (about
# 4 minutes on 2 cores); fails when fewer than MUTATION_MIN percent of the mutants are killed,
# listing the survivors (docs/testing.md). Not part of `make test`.
MUTATION_MIN ?= 90

mutation: $(INSTALLED)
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/python .ci/mutation_score.py --min $(MUTATION_MIN)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The saga against Temporal's floors and DBOS at concurrency 1, 10 and 50; PostgreSQL; 1/2/4
# workers; the sandbox off. Writes bench/results/saga.md and .png, which docs/performance.md
# includes (~14 minutes; BENCH_ARGS="--scale 0.3" is quicker). Then what watching costs it:
# metrics and tracing, each on against off (bench-observability, bench-tracing; ~6 minutes).
bench: $(BENCH_INSTALLED)
	$(BIN)/python -m bench.saga_vs_floor $(BENCH_ARGS)
	$(BIN)/python -m bench.observability
	$(BIN)/python -m bench.tracing_overhead

# The benchmarks' extra (dbos, the peer baseline; matplotlib, the plot): never part of
# `make install`.
bench-install: $(BENCH_INSTALLED)

# What the API adds to placing an order, layer by layer, paired and one at a time (~2 minutes).
bench-api: $(INSTALLED)
	$(BIN)/python -m bench.api_overhead $(BENCH_ARGS)

# What recording a customer's activity adds to a request (tracking on vs off, paired), and the
# durable writes it could use (~1 minute).
bench-activity: $(INSTALLED)
	$(BIN)/python -m bench.activity_overhead $(BENCH_ARGS)

# 300 orders at concurrency 20 while workers, Temporal and a database fail; every invariant
# checked at the end (exit 1 on a violation). E.g. CHAOS_ARGS="--split" or "--postgres".
chaos: $(INSTALLED)
	$(BIN)/python -m chaos $(CHAOS_ARGS)

# 1000 sagas at concurrency 50 from a client process, three times: no process dies mid-run.
load: $(INSTALLED)
	$(BIN)/python -m chaos.load $(LOAD_ARGS)

# The read side: projections vs Temporal at 10,000 orders, rebuilds, snapshots (~25 minutes).
bench-read: $(INSTALLED)
	$(BIN)/python -m bench.read_side $(BENCH_ARGS)

# The customer views (UserView, UserStatistics) at 10,000 customers seeded into the event store:
# in process and over HTTP, p50 and p95 (~5 minutes).
bench-customers: $(INSTALLED)
	$(BIN)/python -m bench.customer_views $(BENCH_ARGS)

# One saga's Temporal history per scenario, from the recorded histories CI replays: events,
# activity tasks, workflow tasks (docs/aws.md compares it with Step Functions' limits).
bench-history: $(INSTALLED)
	$(BIN)/python -m bench.history_sizes $(BENCH_ARGS)

# Memory and idle sagas: 10,000 orders waiting for a payment review; worker memory per cache
# size, resuming cached and evicted sagas, database sizes (about 50 minutes at 10,000 sagas).
bench-idle: $(INSTALLED)
	$(BIN)/python -m bench.idle_sagas $(BENCH_ARGS)

# What watching costs the sagas: metrics on against off (two stacks taking turns), and fifty
# open console pages. Writes bench/results/observability.md (~3 minutes).
bench-observability: $(INSTALLED)
	$(BIN)/python -m bench.observability $(BENCH_ARGS)

# Tracing exporting over OTLP/HTTP to a local collector against tracing off (two stacks taking
# turns), and the spans per order. Writes bench/results/tracing.md (~3 minutes).
bench-tracing: $(INSTALLED)
	$(BIN)/python -m bench.tracing_overhead $(BENCH_ARGS)

# The order saga (orchestrated, on Temporal) beside the return saga (choreographed, over the
# event store), one at a time on one stack: p50 and p95 of their automated parts, the events each
# writes, where to look when one goes wrong, and their code; docs/orchestration-vs-choreography.md
# includes the result (~1 minute).
bench-styles: $(INSTALLED)
	$(BIN)/python -m bench.saga_styles $(BENCH_ARGS)

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

$(BENCH_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache mutants
