#!/usr/bin/env bash
# The instruction-count performance guard: builds the release binary and runs
# `kafka-tasks-bench --instructions`, which drives a small fixed workload against the release
# server under valgrind's callgrind, counts the server's instructions per request (per task for
# the engine) and its SQLite writer thread's I/O (bytes written, i.e. WAL frames, and read
# calls, from /proc/<pid>/task/<tid>/io), and fails when a figure is more than 10 % over its
# budget in bench/instructions.toml. Arguments go to the bench: `--runs 5` measures five times (the spread
# of each operation, and the median checked), `--keep` keeps the callgrind dump of each phase.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq valgrind
fi

cargo build --release --locked -p kafka-tasks -p kafka-tasks-bench --bins
./target/release/kafka-tasks-bench --instructions "$@"
