# clipsearch developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo demo-stop test test-fast lint protos aio clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The asyncio clients, generated from the sync ones (a build product: not in git).
AIO := client/clipsearch/aio.py
$(AIO): scripts/gen_aio.py client/clipsearch/_aio_overrides.py client/clipsearch/encoder_client.py \
		client/clipsearch/index_client.py client/clipsearch/search_client.py | $(STAMP)
	$(PY) scripts/gen_aio.py

NODE_STAMP := tests/contract/interop/node_modules/.installed
$(NODE_STAMP): tests/contract/interop/package-lock.json
	cd tests/contract/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) ## Create .venv and install clipsearch with every extra

demo: $(STAMP) $(AIO) ## Start both services, ingest the demo catalog, run queries (DEMO_ARGS='--encoder-port N' ...)
	$(PY) -m clipsearch.apps.demo.run $(DEMO_ARGS)

demo-stop: $(STAMP) ## Stop the services `make demo` started
	$(PY) -m clipsearch.apps.demo.run --stop $(DEMO_ARGS)

aio: $(STAMP) ## Regenerate clipsearch/aio.py from the sync clients
	$(PY) scripts/gen_aio.py

test: $(STAMP) $(AIO) $(NODE_STAMP) lint ## Lint, then run the whole test suite (real servers on loopback)
	$(PY) -m pytest -q --durations=25

test-fast: $(STAMP) ## Unit tests only (-m unit: in process, no servers; well under a minute)
	$(PY) -m pytest -q -m unit

lint: $(STAMP) $(AIO) ## ruff, mypy, import contracts and buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy client/clipsearch encoder_service index_service
	$(VENV)/bin/lint-imports
	npx --yes @bufbuild/buf lint protos

protos: $(STAMP) ## Regenerate Python code and stubs from protos/
	PYTHON=$(PY) scripts/gen_protos.sh

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
