#!/usr/bin/env bash
# Proves that scripts/kafka-cluster.sh gives a working three-node cluster, with Kafka's own tools
# as the independent view: a topic with replication factor 3 and min.insync.replicas=2, messages
# produced with acks=all before and while one node is down, every acked offset read back over the
# SCRAM listener after that node came back, SCRAM refusing a wrong password, and a stop that
# leaves no JVM of the cluster behind. Every wait is bounded.
#
# Usage: tests/kafka/smoke.sh [all|check|stop]
#   all    (default) start the cluster unless it runs, check it, and stop it if this run started it
#   check  check the running cluster and leave it running (scripts/test.sh runs the connected-mode
#          tests after this, on the same cluster)
#   stop   stop the cluster and check that no JVM it started remains
set -euo pipefail
cd "$(dirname "$0")/../.."

kafka=scripts/kafka-cluster.sh
batch1=${SMOKE_MESSAGES:-300}
batch2=$((batch1 / 2))
tool_timeout=120

say() { printf 'smoke: %s\n' "$*"; }
fail() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }

# Kafka's tools, each bounded (the script execs the JVM, so the timeout reaches it).
tool() { timeout --kill-after=10 "$tool_timeout" "$kafka" tools "$@"; }

load_env() {
  local env
  env=$("$kafka" env) || fail "no cluster (run: $kafka start)"
  set -a
  eval "$env"
  set +a
  work="$KAFKA_CLUSTER_DIR/smoke"
  mkdir -p "$work"
}

# The JVMs whose command line names one of this cluster's node configs: found by looking, not by
# the pid files, so that a node the script lost track of would show up too.
cluster_jvms() {
  ps -eo pid=,args= | awk -v d="$KAFKA_CLUSTER_DIR/node-" '$2 ~ /(^|\/)java$/ && index($0, d) { print $1 }'
}

check() {
  load_env
  local topic out
  topic="smoke-$(date +%s)-$$"
  say "cluster $KAFKA_CLUSTER_ID (Kafka $KAFKA_CLUSTER_VERSION), topic $topic"

  tool topics --bootstrap-server "$KAFKA_BOOTSTRAP" --create --topic "$topic" \
    --partitions 3 --replication-factor 3 --config min.insync.replicas=2 >/dev/null
  out=$(tool topics --bootstrap-server "$KAFKA_BOOTSTRAP" --describe --topic "$topic")
  grep -q 'ReplicationFactor: 3' <<<"$out" || fail "topic is not replicated three times: $out"
  [ "$(grep -cE 'Isr: [0-9]+,[0-9]+,[0-9]+' <<<"$out")" = 3 ] || fail "not every partition has three in-sync replicas: $out"
  out=$(tool configs --bootstrap-server "$KAFKA_BOOTSTRAP" --describe --entity-type topics --entity-name "$topic")
  grep -q 'min.insync.replicas=2' <<<"$out" || fail "min.insync.replicas is not 2: $out"
  say "topic created: 3 partitions, 3 replicas each, min.insync.replicas=2"

  # Keys spread the messages over the three partitions.
  tool producer --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$topic" --acks -1 \
    --max-messages "$batch1" --repeating-keys 30 --value-prefix 1 >"$work/produce-1.jsonl"
  say "batch 1: $batch1 messages sent with acks=all"

  "$kafka" stop-node 3
  tool producer --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$topic" --acks -1 \
    --max-messages "$batch2" --repeating-keys 30 --value-prefix 2 >"$work/produce-2.jsonl"
  say "batch 2: $batch2 messages sent with acks=all while node 3 was down"
  "$kafka" start-node 3

  # Client-config flags that every 4.x knows (4.3 prefers --command-config, which 4.0 lacks), so
  # the test also runs on a cluster of an older Kafka, as an upgrade test's is.
  tool consumer --bootstrap-server "$KAFKA_SASL_BOOTSTRAP" --consumer.config "$KAFKA_SCRAM_CLIENT_CONFIG" \
    --topic "$topic" --group-id "$topic-reader" --max-messages $((batch1 + batch2)) --verbose \
    >"$work/consume.jsonl"
  python3 - "$batch1" "$batch2" "$work/produce-1.jsonl" "$work/produce-2.jsonl" "$work/consume.jsonl" <<'EOF'
import json, sys

def events(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                yield json.loads(line)

expected = {}
for want, path in zip(map(int, sys.argv[1:3]), sys.argv[3:5]):
    acked = [e for e in events(path) if e["name"] == "producer_send_success"]
    if len(acked) != want:
        sys.exit(f"smoke: FAILED: {path}: {len(acked)} of {want} messages acked")
    for e in acked:
        expected[(e["partition"], e["offset"])] = e["value"]
read = {(e["partition"], e["offset"]): e["value"]
        for e in events(sys.argv[5]) if e["name"] == "record_data"}
missing = [k for k in expected if k not in read]
wrong = [k for k in expected if k in read and read[k] != expected[k]]
if missing or wrong:
    sys.exit(f"smoke: FAILED: {len(missing)} acked offsets not read (e.g. {missing[:5]}), "
             f"{len(wrong)} read with another value (e.g. {wrong[:5]})")
parts = sorted({p for p, _ in expected})
print(f"smoke: all {len(expected)} acked offsets read back over SCRAM, partitions {parts}")
EOF

  # The restarted node catches up: no partition stays under-replicated.
  local deadline=$((SECONDS + 60))
  until [ -z "$(tool topics --bootstrap-server "$KAFKA_BOOTSTRAP" --describe --topic "$topic" --under-replicated-partitions)" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "partitions of $topic still under-replicated 60s after node 3 came back"
    sleep 2
  done
  say "node 3 back in every partition's in-sync replicas"

  out=$(tool cluster cluster-id --bootstrap-server "$KAFKA_SASL_BOOTSTRAP" -c "$KAFKA_SCRAM_CLIENT_CONFIG")
  grep -qF "Cluster ID: $KAFKA_CLUSTER_ID" <<<"$out" || fail "SCRAM client did not describe the cluster: $out"
  (
    umask 077
    sed 's/password="[^"]*"/password="not-the-password"/' "$KAFKA_SCRAM_CLIENT_CONFIG" >"$work/wrong-password.properties"
  )
  if out=$(tool cluster cluster-id --bootstrap-server "$KAFKA_SASL_BOOTSTRAP" \
    -c "$work/wrong-password.properties" 2>&1); then
    fail "a wrong SCRAM password was accepted: $out"
  fi
  grep -q 'SaslAuthenticationException' <<<"$out" || fail "a wrong password failed, but not on authentication: $out"
  say "SCRAM-SHA-512: the test user describes the cluster, a wrong password is refused"

  out=$(tool quorum --bootstrap-server "$KAFKA_BOOTSTRAP" describe --status)
  grep -qE '^CurrentVoters:.*"id": ?1.*"id": ?2.*"id": ?3' <<<"$out" \
    || grep -qE '^CurrentVoters:\s*\[1,\s*2,\s*3\]' <<<"$out" \
    || fail "the metadata quorum does not have the three voters: $out"
  say "metadata quorum: three voters"
}

stop() {
  load_env
  local before left
  before=$(cluster_jvms | wc -l)
  "$kafka" stop
  left=$(cluster_jvms)
  [ -z "$left" ] || fail "JVMs of the cluster still running after stop: $left"
  if "$kafka" status >/dev/null; then
    fail "status still reports the cluster running"
  fi
  say "cluster stopped: $before JVMs before, none left"
}

case "${1:-all}" in
  check) check ;;
  stop) stop ;;
  all)
    if "$kafka" status >/dev/null 2>&1; then
      check
    else
      trap '"$kafka" stop' EXIT
      "$kafka" start
      check
      stop
      trap - EXIT
    fi
    ;;
  *)
    echo "usage: $0 [all|check|stop]" >&2
    exit 2
    ;;
esac
