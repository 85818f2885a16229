# One entry point for a fresh machine: `make demo` trains, evaluates and exports on the built-in data set, then
# serves; `make test` runs the whole suite. Both install what they need first (Debian packages, then a venv):
# the demo the runtime only, the tests everything (benchmarks, their peers, deployment tools, linters).
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/lstm.yaml
APT_PACKAGES := redis-server prometheus wrk

.PHONY: install install-dev system-packages demo train serve test test-fast lint

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.runtime: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: any looser request pulls a multi-GB CUDA build (see README for GPUs).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.runtime

install-dev: system-packages $(VENV)/.dev

train: install
	$(VENV)/bin/seqcast-train fit $(foreach c,$(CONFIG),--config $(c))

serve: install
	$(VENV)/bin/bentoml serve service.service:Seqcast --port $(or $(PORT),3000)

demo: train serve

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

# The tests that start no server and no subprocess: a minute or so, for changes to pure functions.
test-fast: install-dev
	$(PY) -m pytest -m "not process" -q
