# The single entry point: `make help` lists the targets.
SHELL := /bin/bash
VENV := .venv
BIN := $(abspath $(VENV))/bin
PY_SOURCES := python tests bench docker/grafana

.PHONY: help venv build run test lint test-rust test-python bench bench-stages dashboards clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.deps: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.deps ## create .venv with every dependency

build: venv ## build the Rust extension in release mode into .venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release --skip-install

run: build ## run the daemon on its embedded defaults (PostgreSQL in ./tidegate-data)
	$(BIN)/tidegate serve

lint: build ## format and lint checks, type checks (stubtest needs the fresh extension)
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest tidegate._core --allowlist python/stubtest-allowlist.txt \
		--ignore-unused-allowlist

test-rust: ## Rust unit tests
	cargo test --quiet

test-python: build ## pytest against real PostgreSQL and real OTLP clients
	$(BIN)/pytest

test: build lint test-rust test-python ## everything CI runs

bench: build ## end-to-end benchmark: tidegate against the baseline on real PostgreSQL
	$(BIN)/python bench/e2e.py

bench-stages: build ## per-stage micro-benchmarks (criterion) and the spool append benchmark
	cargo bench --bench stages --features bench-internals -- --noplot
	$(BIN)/python bench/bench_spool.py

dashboards: venv ## regenerate docker/grafana/dashboards/*.json from docker/grafana/generate.py
	$(BIN)/python docker/grafana/generate.py

clean: ## remove build outputs and the virtualenv
	rm -rf $(VENV) target python/tidegate/_core*.so
