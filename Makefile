# bedrock_cp — `make demo` and `make test` work on a fresh machine: they create
# .venv, build and install both wheels (native: maturin/Rust; python: Cython).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CARGO ?= cargo
# Every pip install (build-isolation environments included) takes the exact
# versions pinned in constraints.txt; `make lock` refreshes them.
export PIP_CONSTRAINT := $(abspath constraints.txt)

.PHONY: demo test chaos bench soak sim wheels setup native python lint rust-test pytest clean lock version docs

## demo: set up, then run the main job
demo: setup
	$(BIN)/bedrock-cp demo

## test: set up, lint (rustfmt, clippy, ruff, mypy), cargo test, pytest
test: setup lint rust-test pytest

$(BIN)/.deps: requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

## lock: re-resolve requirements-dev.txt to the newest versions and pin them in constraints.txt
lock:
	ci/lock

setup: python

# The native wheel, always in release mode: debug builds are never what tests or benches load.
native: $(BIN)/.deps
	rm -rf native/target/wheels
	cd native && ../$(BIN)/maturin build --release --locked --quiet --out target/wheels --interpreter ../$(BIN)/python
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps native/target/wheels/*.whl

# The Python package, editable, with its Cython extensions built in place.
python: native
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-deps -e .

lint: $(BIN)/.deps
	cd native && $(CARGO) fmt --all --check
	cd native && $(CARGO) clippy --locked --workspace --all-targets --quiet -- -D warnings
	$(BIN)/ruff check bedrock_cp tests benches native/python
	$(BIN)/ruff format --check bedrock_cp tests benches native/python
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest bedrock_cp_native --allowlist native/stubtest-allowlist.txt

# The binding crate is a cdylib for Python; it is exercised by pytest, not cargo test.
# The randomized schedules run their fixed seeds plus a fresh random base (printed).
rust-test:
	cd native && $(CARGO) test --locked --workspace --exclude bedrock-cp-native

## soak: not part of `make test`: 100,000 randomized Raft schedules (crashes, power losses,
## partitions), then SEEDS (2000) whole-system simulations from a fresh base, SIM_JOBS (2) at a time
SOAK_FIXED ?= 20000
SOAK_FRESH ?= 80000
SEEDS ?= 2000
SIM_JOBS ?= 2
soak: setup
	cd native && RAFT_SEEDS=$(SOAK_FIXED) RAFT_FRESH=$(SOAK_FRESH) $(CARGO) test --release \
		-p bedrock-raft-harness --test randomized -- --nocapture
	$(BIN)/python -m tests.sim --fresh $(SEEDS) --jobs $(SIM_JOBS)

## sim: replay one whole-system simulation: make sim SEED=N (its schedule, checks and trace;
## VERBOSE=1 adds every node's log); without SEED, the seeds `make test` runs
sim: setup
	$(if $(SEED),$(BIN)/python -m tests.sim --seed $(SEED) $(if $(VERBOSE),--verbose),\
		$(BIN)/python -m tests.sim --fixed 200 --fresh 100 --jobs $(SIM_JOBS))

pytest:
	$(BIN)/pytest

## chaos: long chaos runs on real processes: CHAOS_SECONDS (600) of faults, CHAOS_RUNS (3)
## fresh seeds per cluster size plus the fixed one; CHAOS_SEED=N replays a run's schedule
chaos: setup
	CHAOS_SECONDS=$${CHAOS_SECONDS:-600} CHAOS_RUNS=$${CHAOS_RUNS:-3} \
		$(BIN)/pytest tests/test_chaos.py -v -rA

## bench: pytest-benchmark suites beside etcd (and PySyncObj); JSON, a markdown table of ratios and PNG plots in benches/results/latest*
bench: setup
	@command -v etcd >/dev/null || { echo "make bench: etcd is not installed; the cluster benches run it beside ours." >&2; \
		echo "  Debian/Ubuntu: sudo apt-get install etcd-server etcd-client" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	mkdir -p benches/results
	$(BIN)/pytest benches -p no:randomly --benchmark-only --benchmark-save-data \
		--benchmark-json=benches/results/latest.json
	$(BIN)/python -m benches.report benches/results/latest.json

## version: set the version (bedrock_cp/_version.py, the one source, and native/Cargo.toml): make version V=0.2.0
version:
	@test -n "$(V)" || { echo "usage: make version V=x.y.z" >&2; exit 2; }
	sed -i 's/^__version__ = ".*"/__version__ = "$(V)"/' bedrock_cp/_version.py
	sed -i '0,/^version = ".*"/s//version = "$(V)"/' native/Cargo.toml
	cd native && $(CARGO) update --workspace --quiet

## docs: regenerate docs/configuration.md and docs/cli.md from the code
docs: setup
	$(BIN)/python -m bedrock_cp.cli.reference docs

## wheels: both wheels from their sdists into dist/, installed and imported in a fresh venv
wheels:
	ci/build-wheels

clean:
	rm -rf $(VENV) build dist native/target *.egg-info bedrock_cp/*.so bedrock_cp/*.c
