# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv and
# install the pinned versions (constraints.txt) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration bench lock schemas clean browser-deps compose-deps

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

test: lint browser-deps compose-deps
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

# The real-browser test (tests/system/test_browser_journey.py) drives Debian's chromium through its chromedriver.
# Installed here when missing, so a fresh CI machine gets them from the project's files.
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "browser-deps: not root and no sudo: the browser test will skip"; exit 0; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install \
	  -y -qq --no-install-recommends chromium chromium-driver

# Compose itself validates docker-compose.yml (tests/deploy/test_compose.py; `config`
# needs no engine). Debian's docker-compose when neither `docker compose` nor it is there.
compose-deps:
	@if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "compose-deps: not root and no sudo: the compose test will skip"; exit 0; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install \
	  -y -qq --no-install-recommends docker-compose

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
