#!/usr/bin/env bash
# Runs every check and test of the project, doing its own set-up on a fresh machine:
# the Python venv with the official Huawei SDK, PostgreSQL up, formatting, lints,
# a three-node Apache Kafka test cluster (its jars from Maven Central on the first run), the Rust
# unit and integration tests (connected mode against that cluster), the instruction-count
# performance guard (release build under callgrind), and the official clients (Python, Node.js,
# Go and Java SDKs, a replay of the Terraform provider's requests) against the built binary, and
# OpenTofu with the real huaweicloud provider (in the background, overlapping the Rust tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's header says when it started, and the run ends with how long each step took, so
# that a slow CI run shows where its time went.
step_names=()
step_starts=()
step() {
  step_names+=("$*")
  step_starts+=("$SECONDS")
  printf '\n==> %s   [%d s]\n' "$*" "$SECONDS"
}
step_summary() {
  local i end
  printf '\n==> Time per step (total %d s)\n' "$SECONDS"
  for i in "${!step_names[@]}"; do
    end=${step_starts[$((i + 1))]:-$SECONDS}
    printf '%6d s  %s\n' "$((end - ${step_starts[$i]}))" "${step_names[$i]}"
  done
}

# CI runs this on a clean clone each time. The build output of the dependencies, which changes
# only with Cargo.lock and the toolchain, is kept between CI runs outside the clone (as hosted CI
# caches it), so a warm run compiles only this workspace's crates; cargo's own fingerprints decide what is
# stale. Their output is rebuilt every run (the clone's path is part of its hash), so the
# previous run's copy is dropped first and the cache does not grow by a build a run.
if [ "${CI:-}" = true ] && [ ! -e target ]; then
  ci_cache="${KAFKA_TASKS_CI_CACHE:-$HOME/.cache/kafka-tasks-ci}"
  own=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
print(" ".join(sorted({t["name"].replace("-", "_") for p in json.load(sys.stdin)["packages"] for t in p["targets"]})))')
  mkdir -p target
  for profile in debug release; do
    mkdir -p "$ci_cache/$profile"
    for name in $own; do
      rm -rf "$ci_cache/$profile/deps/$name-"* "$ci_cache/$profile/deps/lib$name-"*
    done
    rm -rf "$ci_cache/$profile/.fingerprint/kafka-tasks-"* "$ci_cache/$profile/build/kafka-tasks-"* \
      "$ci_cache/$profile/incremental"
    ln -s "$ci_cache/$profile" "target/$profile"
  done
  export CARGO_INCREMENTAL=0
fi

step "PostgreSQL on 127.0.0.1:5432 (installed and started if missing)"
./scripts/postgres.sh

step "Kafka test cluster (three KRaft nodes)"
# A fresh cluster each run, on the first free ports (another checkout may be testing on this
# machine), stopped however the run ends. The connected-mode tests (tests/api/connected.rs) read
# its addresses from the cluster.env named in KAFKA_TASKS_TEST_KAFKA.
./scripts/kafka-cluster.sh clean
# The OpenTofu jobs below run in the background, each in a session of its own, so that a run that
# ends early stops them (and the server and tofu processes they started) with the cluster.
TOFU_DIR="$PWD/target/tofu-test"
tofu_jobs=()
stop_background() {
  local pid
  for pid in "${tofu_jobs[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
}
trap 'stop_background; ./scripts/kafka-cluster.sh stop; step_summary' EXIT
KAFKA_BASE_PORT=auto ./scripts/kafka-cluster.sh start
tests/kafka/smoke.sh check
export KAFKA_TASKS_TEST_KAFKA="$PWD/target/kafka-cluster/cluster.env"

step "Python venv with the official SDK"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt

step "OpenTofu and the huaweicloud provider (built in the background on the first run)"
# About nine minutes once per machine (scripts/tofu-tools.sh caches both binaries), overlapping
# the lints and the build; its result is what the OpenTofu test below waits for.
rm -rf "$TOFU_DIR" && mkdir -p "$TOFU_DIR"
setsid bash -c 'scripts/tofu-tools.sh >"$1/tools.env" 2>"$1/tools.log"; echo $? >"$1/tools.rc"' _ "$TOFU_DIR" &
tofu_jobs+=("$!")

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The PostgreSQL server the tests make their databases on (one fresh database per test).
export KAFKA_TASKS_TEST_PG="${KAFKA_TASKS_TEST_PG:-postgres://postgres@127.0.0.1:5432}"

run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "$@"
  else
    cargo test --workspace --locked --no-fail-fast "$@"
  fi
}

step "Rust tests: unit, storage contract and API over HTTP on SQLite and PostgreSQL, connected mode on the Kafka cluster, crash and attack suites"
# The CLI's completion tests drive real shells: zsh on a pty (tmux) and fish; `script` (util-linux)
# gives the confirmation test its terminal. The Prometheus tests (the dashboard's queries, a live
# scrape and its alerts) are among the test binaries this step runs, so Prometheus is installed
# here, before them, and they are required: they fail rather than skip without it.
if ! command -v zsh >/dev/null || ! command -v fish >/dev/null || ! command -v tmux >/dev/null \
  || ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  apt-get update -qq && apt-get install -y -qq zsh fish tmux prometheus
fi
export KAFKA_TASKS_REQUIRE_PROMETHEUS=1
cargo build --locked --workspace --bins

# OpenTofu with the real provider, in the background from here to the end of the run: most of
# its time is the provider's own waits (300 s after a create, 180 s after a resize), which
# overlap the tests below. It runs a copy of the binary, so that later builds cannot change it.
cp target/debug/kafka-tasks "$TOFU_DIR/kafka-tasks"
setsid bash -c '
  dir="$1"
  while [ ! -e "$dir/tools.rc" ]; do sleep 2; done
  if [ "$(cat "$dir/tools.rc")" != 0 ]; then
    echo "scripts/tofu-tools.sh failed:"; cat "$dir/tools.log"; exit 1
  fi
  start=$(date +%s)
  KT_TOFU="$(sed -n "s/^TOFU=//p" "$dir/tools.env")" \
  KT_PROVIDER_DIR="$(sed -n "s/^PROVIDER_DIR=//p" "$dir/tools.env")" \
  KAFKA_TASKS_BIN="$dir/kafka-tasks" \
    .venv/bin/python -m pytest -q -rxXs -p no:cacheprovider --basetemp="$dir/tmp" tests/terraform/test_tofu.py
  rc=$?
  echo "OpenTofu test: exit $rc after $(( $(date +%s) - start )) s"
  exit $rc
' _ "$TOFU_DIR" >"$TOFU_DIR/test.log" 2>&1 &
tofu_test=$!
tofu_jobs+=("$tofu_test")

run_tests

step "Benchmark, quick mode (proves the command works; asserts no numbers)"
./target/debug/kafka-tasks-bench --quick
./target/debug/kafka-tasks-bench --quick --engine postgres --pg-server "$KAFKA_TASKS_TEST_PG"

step "Instruction-count guard (release server under callgrind; fails on an operation over its budget: instructions +10 %, writer I/O +5 %)"
./scripts/perf-guard.sh

step "Prometheus alert rules and their unit tests (the dashboard and live-scrape tests ran with the Rust tests)"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

step "OpenAPI document and conformance"
.venv/bin/pip install -q --disable-pip-version-check -r tests/openapi/requirements.txt
KAFKA_TASKS_BIN="$PWD/target/debug/kafka-tasks" .venv/bin/python tests/openapi/conformance.py

step "Official Python SDK against the binary"
KAFKA_TASKS_BIN="$PWD/target/debug/kafka-tasks" .venv/bin/python -m pytest -q tests/sdk

step "Official Node.js SDK and Terraform replay"
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
KAFKA_TASKS_BIN="$PWD/target/debug/kafka-tasks" npm test --prefix tests/node
KAFKA_TASKS_BIN="$PWD/target/debug/kafka-tasks" .venv/bin/python -m pytest -q tests/terraform/test_replay.py

step "Official Go SDK against the binary"
# Modules come from the Go proxy on the first run, checked against the committed go.sum.
if [ -n "$(gofmt -l tests/go)" ]; then
  gofmt -l tests/go
  echo "gofmt: the files above need formatting" >&2
  exit 1
fi
GOFLAGS=-mod=readonly go -C tests/go vet ./...
GOFLAGS=-mod=readonly KAFKA_TASKS_BIN="$PWD/target/debug/kafka-tasks" go -C tests/go test -count=1 ./...

step "Official Java SDK against the binary"
if ! command -v mvn >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq maven
fi
# -q still prints Surefire's "Tests run: N, Failures: …" lines: tests/java/.mvn/maven.config keeps
# the Surefire plugin's own log at INFO. Dependencies are fetched once, into ~/.m2.
KAFKA_TASKS_BIN="$PWD/target/debug/kafka-tasks" mvn -q -B -f tests/java/pom.xml test

step "Console in headless Chromium"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && apt-get install -y -qq chromium
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/console/requirements.txt
KAFKA_TASKS_BIN="$PWD/target/debug/kafka-tasks" .venv/bin/python -m pytest -q tests/console

step "OpenTofu with the real huaweicloud provider (started in the background after the build)"
if ! wait "$tofu_test"; then
  cat "$TOFU_DIR/test.log"
  echo "OpenTofu test failed; the provider's debug logs are under $TOFU_DIR/tmp" >&2
  exit 1
fi
tail -n 3 "$TOFU_DIR/test.log"
tofu_jobs=()

step "Kafka test cluster stopped"
tests/kafka/smoke.sh stop
trap - EXIT
step_summary
