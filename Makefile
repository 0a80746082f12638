# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv and
# install the pinned versions (constraints.txt) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration bench lock schemas clean test-deps test-deps-check \
	browser-deps compose-deps

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pricewatch demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Installs nothing on the system: it says which system packages are missing and which
# tests skip without them (with REQUIRE_SERVICES=1, as .ci/run sets, those tests fail).
test: lint test-deps-check
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

HAVE_BROWSER = [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
HAVE_COMPOSE = docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null

test-deps-check:
	@if ! { $(HAVE_BROWSER); }; then \
	  echo "make test: no /usr/bin/chromium + /usr/bin/chromedriver:" \
	    "tests/system/test_browser_journey.py skips (make test-deps installs them)"; fi
	@if ! { $(HAVE_COMPOSE); }; then \
	  echo "make test: no docker compose / docker-compose:" \
	    "tests/deploy/test_compose.py::test_compose_itself_accepts_the_file skips" \
	    "(make test-deps installs it)"; fi

# System packages some tests need, installed only when asked (or by .ci/run): Debian's
# chromium and chromium-driver (the real-browser test) and docker-compose (Compose itself
# validates docker-compose.yml; `config` needs no engine). apt-get, as root or with sudo.
test-deps: browser-deps compose-deps

APT_INSTALL = if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "$@: not root and no sudo: install $(1) yourself"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "$@: no apt-get: install $(1) yourself"; exit 0; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install \
	  -y -qq --no-install-recommends $(1)

browser-deps:
	@if $(HAVE_BROWSER); then exit 0; fi; $(call APT_INSTALL,chromium chromium-driver)

compose-deps:
	@if $(HAVE_COMPOSE); then exit 0; fi; $(call APT_INSTALL,docker-compose)

# Without services: the unit tests and the deployment files' checks.
unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit tests/deploy $(PYTEST_ARGS)

# With a real broker and PostgreSQL: one role at a time, then the whole pipeline.
integration: $(STAMP)
	$(BIN)/python -m pytest -ra tests/integration tests/system $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-pin: resolve the newest allowed versions in a scratch venv and record them.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/python -m pip install --quiet --upgrade pip
	.lockvenv/bin/python -m pip install --quiet -e '.[test]'
	.lockvenv/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt
	rm -rf .lockvenv

schemas: $(STAMP)
	$(BIN)/pricewatch contract schemas

clean:
	rm -rf $(VENV) .pricewatch test-artifacts .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
