# bedrock_cp — `make demo` and `make test` work on a fresh machine: they create
# .venv, build and install both wheels (native: maturin/Rust; python: Cython).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CARGO ?= cargo

.PHONY: demo test bench soak wheels setup native python lint rust-test pytest clean

## demo: set up, then run the main job
demo: setup
	$(BIN)/bedrock-cp demo

## test: set up, lint (rustfmt, clippy, ruff, mypy), cargo test, pytest
test: setup lint rust-test pytest

$(BIN)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: python

# The native wheel, always in release mode: debug builds are never what tests or benches load.
native: $(BIN)/.deps
	rm -rf native/target/wheels
	cd native && ../$(BIN)/maturin build --release --quiet --out target/wheels --interpreter ../$(BIN)/python
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps native/target/wheels/*.whl

# The Python package, editable, with its Cython extensions built in place.
python: native
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-deps -e .

lint: $(BIN)/.deps
	cd native && $(CARGO) fmt --all --check
	cd native && $(CARGO) clippy --workspace --all-targets --quiet -- -D warnings
	$(BIN)/ruff check bedrock_cp tests benches native/python
	$(BIN)/ruff format --check bedrock_cp tests benches native/python
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest bedrock_cp_native --allowlist native/stubtest-allowlist.txt

# The binding crate is a cdylib for Python; it is exercised by pytest, not cargo test.
# The randomized schedules run their fixed seeds plus a fresh random base (printed).
rust-test:
	cd native && $(CARGO) test --workspace --exclude bedrock-cp-native

## soak: 100,000 randomized schedules (crashes, power losses, partitions; not part of `make test`)
SOAK_FIXED ?= 20000
SOAK_FRESH ?= 80000
soak:
	cd native && RAFT_SEEDS=$(SOAK_FIXED) RAFT_FRESH=$(SOAK_FRESH) $(CARGO) test --release \
		-p bedrock-raft-harness --test randomized -- --nocapture

pytest:
	$(BIN)/pytest

## bench: pytest-benchmark suites (installs etcd, the cluster benches' peer); JSON in benches/results/
bench: setup
	command -v etcd >/dev/null || (apt-get update -qq && apt-get install -y -qq etcd-server etcd-client)
	mkdir -p benches/results
	$(BIN)/pytest benches -p no:randomly --benchmark-only \
		--benchmark-json=benches/results/latest.json

## wheels: both wheels from their sdists into dist/, installed and imported in a fresh venv
wheels:
	ci/build-wheels

clean:
	rm -rf $(VENV) build dist native/target *.egg-info bedrock_cp/*.so bedrock_cp/*.c
