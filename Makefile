# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
# Bytecode is cached (in __pycache__, ignored by git) even where the environment says
# not to: every test process and every `maskline` it starts would compile the project,
# the tests and pytest's assertion rewrites from source again (collection: 12 s → 6 s).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast test-sqlite test-postgres lint format docs bench bench-post bench-profile bench-e2e bench-sip \
	lock clean sdk-node-types

$(STAMP): pyproject.toml requirements.lock sdk/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e sdk/python
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/maskline serve

# The documentation site (mkdocs.yml) into site/, served by `maskline serve` at /docs/guide/.
# Its hook writes docs/openapi.json from the app first; --strict makes a warning (a broken
# link, a missing page) fail the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# lint-imports checks the import rules ([tool.importlinter] in pyproject.toml); it takes
# about a second, so it keeps no cache in the checkout.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pytest's exit code 5 (no tests collected) is a broken setup, not a pass.
define PYTEST
	$(BIN)/python -m pytest $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
endef

# The test layers (docs/decisions.md). Each xdist worker is a pytest session with a
# database of its own; most tests wait on sockets, timers and processes more than they
# compute, so there are more workers than the machine's 2 cores.
WORKERS ?= 4
XDIST = -n $(WORKERS)
FAST := -m "not sip and not subprocess and not slow"

# The pure and in-process tests, on SQLite: the answer in under a minute.
test-fast: $(STAMP)
	MASKLINE_TEST_DATABASE=sqlite $(call PYTEST,-n 2 $(FAST))

test-sqlite: $(STAMP)
	MASKLINE_TEST_DATABASE=sqlite $(call PYTEST,$(XDIST))

test-postgres: $(STAMP)
	MASKLINE_TEST_DATABASE=postgresql MASKLINE_TEST_PG_ADMIN_URL=$(PG_ADMIN_URL) \
		$(call PYTEST,$(XDIST))

# The two databases' sessions side by side, WORKERS_EACH workers each: they wait on
# sockets, timers and processes more than they compute, so together they fill the two
# cores (one after the other, 11 min; side by side, under 9: docs/decisions.md). Each
# session's output is kept and printed once both have ended. Tests that reach no
# database run in the SQLite session only.
WORKERS_EACH ?= 3
test: lint
	@logs=$$(mktemp -d); \
	echo "SQLite and PostgreSQL sessions running side by side (their output follows)"; \
	MASKLINE_TEST_DATABASE=sqlite $(BIN)/python -m pytest -n $(WORKERS_EACH) $(PYTEST_ARGS) \
		>$$logs/sqlite 2>&1 & sqlite=$$!; \
	MASKLINE_TEST_DATABASE=postgresql MASKLINE_TEST_PG_ADMIN_URL=$(PG_ADMIN_URL) \
		MASKLINE_TEST_DATABASE_FREE=skip $(BIN)/python -m pytest -n $(WORKERS_EACH) \
		$(PYTEST_ARGS) >$$logs/postgresql 2>&1 & postgresql=$$!; \
	wait $$sqlite; sqlite_rc=$$?; wait $$postgresql; postgresql_rc=$$?; \
	for kind in sqlite postgresql; do echo "===== $$kind"; cat $$logs/$$kind; done; \
	rm -rf $$logs; \
	for rc in $$sqlite_rc $$postgresql_rc; do \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
		if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	done

bench: $(STAMP)
	$(BIN)/python -m bench

# The POST table alone (docs/benchmarks.md): wrk (Debian's package) against the bare
# yardstick and maskline's three set-ups, about two minutes.
bench-post: $(STAMP)
	$(BIN)/python -m bench.post

# Where a POST's time goes (docs/benchmarks.md): py-spy on an API process under wrk,
# PostgreSQL's connection states, SQLite's write turn, one POST's statements.
bench-profile: $(STAMP)
	$(BIN)/python -m bench.post_profile

# Issue 14's end-to-end probe (docs/benchmarks.md): calls placed open-loop at rising
# rates on the sim, webhooks to nginx (Debian's nginx-light), the best rate held 60 s; for
# the PostgreSQL roles and the embedded process, about 15 minutes. E2E_ARGS passes options
# (`--rates 5,10 --seconds 10 --hold 0`, `--record`, `--profile`, `sqlite`).
bench-e2e: $(STAMP)
	$(BIN)/python -m bench.e2e $(E2E_ARGS)

# Issue 14's SIP figures (docs/benchmarks.md): the API and the engine in separate processes
# on PostgreSQL, and embedded SQLite, SIPp (Debian's) as the trunk answering both legs;
# calls placed open-loop at rising rates, 30 s each on a fresh start, then the best held
# 60 s: outcomes, connect latency on the wire (SIPp's trace), CPU and RSS of each process;
# about 15 minutes. SIP_ARGS passes options (`--rates 50,100 --seconds 10 --hold 0`,
# `--profile`, `postgresql`).
bench-sip: $(STAMP)
	$(BIN)/python -m bench.sip_rate $(SIP_ARGS)

# The Node client's types (sdk/node/src/openapi.ts), generated again from the app's OpenAPI
# document with openapi-typescript, and sdk/node/lib compiled with them; tests/sdk/test_node_client.py
# fails while either differs.
sdk-node-types: $(STAMP)
	$(BIN)/python -m tests.sdk.node_package

# sippy declares the needs of its web UI and RTP generator, which maskline never
# imports (its UA and transaction layer need only elperiodic and pycryptodome).
# werkzeug stays: schemathesis (dev) needs it; jinja2 stays: the portal's templates.
SIPPY_UNUSED := $(addprefix --no-emit-package ,flask flask-login websockets rtpsynth g722 \
	itsdangerous blinker)

# Regenerate the lock after changing dependencies in pyproject.toml.
lock:
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--no-header $(SIPPY_UNUSED) -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
