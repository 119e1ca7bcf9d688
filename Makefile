# tidings: `make run` serves on the embedded default, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-smoke clean browser-deps test-deps

# What running needs: tidings and its drivers (PostgreSQL, Redis), pinned.
$(RUN_STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[postgres,redis]'
	touch $(RUN_STAMP)

# Everything: the above plus the test, lint and benchmark tools.
$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,postgres,redis,bench]'
	touch $(STAMP)

## run: serve on 127.0.0.1:8000 with SQLite and the in-process broker (ARGS=... for flags)
run: $(RUN_STAMP)
	$(BIN)/tidings serve $(ARGS)

## browser-deps: Debian's Chromium and the JS client's npm packages (the browser and JS tests)
JS_DIR := clients/js
JS_STAMP := $(JS_DIR)/node_modules/.installed

browser-deps: $(JS_STAMP)
	@test -x /usr/bin/chromium || { echo "installing Chromium (Debian package chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "could not install chromium: the browser tests skip here (and fail in CI)"

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: the JS tests skip here (and fail in CI)"; exit 0; }; \
		cd $(JS_DIR) && npm ci --no-audit --no-fund && touch node_modules/.installed

## test-deps: the Debian programs the doc, deploy and metrics tests run (command:package)
TEST_PROGRAMS := haproxy:haproxy nginx:nginx jq:jq openssl:openssl \
	systemd-analyze:systemd docker-compose:docker-compose prometheus:prometheus

test-deps:
	@missing=""; for tool in $(TEST_PROGRAMS); do \
		command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool#*:}"; done; \
	test -z "$$missing" || { echo "installing$$missing (Debian)"; apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
		|| echo "could not install$$missing: the tests that need them skip here (and fail in CI)"

## test: lint, type-check and the whole test suite (PostgreSQL and Redis on 127.0.0.1)
test: $(STAMP) browser-deps test-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## bench: set up the peers (bench/.venv, npm ci) and run every workload (< 10 min); results in bench/results/
bench: $(STAMP)
	$(BIN)/python -m bench

## bench-smoke: the harness in seconds (tidings + the Python peers this venv can run)
bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
