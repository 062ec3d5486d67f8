#!/usr/bin/env bash
# Connected-mode reassignment benchmark: the same partition move, at the same throttle, on the
# same cluster, once through kafka-tasks and once with Kafka's own kafka-reassign-partitions
# (--execute, then --verify polled until complete, which also removes the throttles).
#
#   scripts/bench-connected.sh            # against the cluster of scripts/kafka-cluster.sh
#
# Environment:
#   BENCH_PARTITIONS  partitions of the topic moved (default 100)
#   BENCH_MB          megabytes of data in it, before replication (default 1024)
#   BENCH_THROTTLE    replication throttle, bytes/s (default 50000000)
#   BENCH_RECORD      record size in bytes (default 10000)
#   KAFKA_CLUSTER_DIR the cluster (default target/kafka-cluster; start it with
#                     `KAFKA_BASE_PORT=auto scripts/kafka-cluster.sh start`)
#
# The topic starts on brokers 1 and 2 (RF 2, min.insync.replicas 2). kafka-tasks moves every
# partition onto brokers (3,2) round-robin; Kafka's tool moves it back onto (1,2): each run copies
# the whole topic into one broker at the throttle. While kafka-tasks runs, its step's reported
# progress is sampled beside the bytes the new replicas hold (`kafka-log-dirs --describe`), for
# the progress accuracy. Needs about 3 × BENCH_MB of free disk; the topic is deleted at the end.
# Not part of scripts/test.sh: at the defaults it takes several minutes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
kafka="$root/scripts/kafka-cluster.sh"
export KAFKA_CLUSTER_DIR=${KAFKA_CLUSTER_DIR:-$root/target/kafka-cluster}
partitions=${BENCH_PARTITIONS:-100}
mb=${BENCH_MB:-1024}
throttle=${BENCH_THROTTLE:-50000000}
record=${BENCH_RECORD:-10000}
say() { echo "bench-connected: $*" >&2; }
die() { say "$*"; exit 1; }

eval "$("$kafka" env | sed 's/^/export /')" || die "no cluster: start one with scripts/kafka-cluster.sh start"
tool() { "$kafka" tools "$@"; }

(cd "$root" && cargo build --quiet) || die "build failed"
bin="$root/target/debug/kafka-tasks"
work=$(mktemp -d)
topic="bench-reassign-$$"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  tool topics --bootstrap-server "$KAFKA_BOOTSTRAP" --delete --topic "$topic" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- kafka-tasks on a fresh SQLite database, allowed to reach the cluster on loopback ---------
"$bin" serve --listen 127.0.0.1:0 --log-format json --database "sqlite:$work/db.sqlite" \
  --master-key-file "$work/master.key" --time-scale 0 --cluster-allow 127.0.0.1 \
  --metrics-listen api 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do
  addr=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: v=json.loads(l)
    except ValueError: continue
    if v.get("message")=="listening": print(v["addr"]); break' "$work/server.log")
  [ -n "$addr" ] && [ -f "$work/initial-credential.json" ] && break
  sleep 0.2
done
[ -n "${addr:-}" ] || die "the server did not start: $(tail -5 "$work/server.log")"
export KAFKA_TASKS_ENDPOINT="http://$addr"
export HUAWEICLOUD_SDK_PROJECT_ID=0123456789abcdef0123456789abcdef
HUAWEICLOUD_SDK_AK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_key"])' "$work/initial-credential.json")
HUAWEICLOUD_SDK_SK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret_key"])' "$work/initial-credential.json")
export HUAWEICLOUD_SDK_AK HUAWEICLOUD_SDK_SK
token=$("$bin" token create --access-key "$HUAWEICLOUD_SDK_AK" --database "sqlite:$work/db.sqlite" \
  --master-key-file "$work/master.key")
inst=$("$bin" instances create --name bench --wait -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["instance_id"])')
"$bin" cluster bind --instance "$inst" --bootstrap-servers "$KAFKA_BOOTSTRAP" >/dev/null

# --- the topic: on brokers 1 and 2, filled -------------------------------------------------
assignment=$(python3 -c "print(','.join(['1:2'] * $partitions))")
tool topics --bootstrap-server "$KAFKA_BOOTSTRAP" --create --topic "$topic" \
  --replica-assignment "$assignment" --config min.insync.replicas=2 >/dev/null
records=$((mb * 1024 * 1024 / record))
say "filling $topic: $partitions partitions, $records records of $record bytes ($mb MB), acks=all"
tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$records" \
  --record-size "$record" --throughput -1 --producer-props "bootstrap.servers=$KAFKA_BOOTSTRAP" acks=all \
  | tail -1 >&2

# Bytes of the topic on one broker, by kafka-log-dirs (the independent view of bytes moved).
bytes_on() {
  tool log-dirs --bootstrap-server "$KAFKA_BOOTSTRAP" --describe --broker-list "$1" --topic-list "$topic" \
    | python3 -c 'import json,sys
for l in sys.stdin:
    if l.startswith("{"):
        v=json.loads(l); print(sum(p["size"] for b in v["brokers"] for d in b["logDirs"] for p in d["partitions"])); break'
}
total=$(bytes_on 1)
say "the topic holds $total bytes on broker 1"

# --- run 1: kafka-tasks --------------------------------------------------------------------
estimate=$("$bin" reassign --instance "$inst" --topic "$topic" --brokers 3,2 --throttle "$throttle" --estimate -o json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["reassignment_time"])')
start=$(date +%s.%N)
job=$("$bin" reassign --instance "$inst" --topic "$topic" --brokers 3,2 --throttle "$throttle" -o json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
samples="$work/samples"
: >"$samples"
while :; do
  run=$(curl -sf -H "X-Auth-Token: $token" \
    "$KAFKA_TASKS_ENDPOINT/v2/$HUAWEICLOUD_SDK_PROJECT_ID/instances/$inst/tasks/$job/executor" || true)
  status=$(curl -sf -H "X-Auth-Token: $token" \
    "$KAFKA_TASKS_ENDPOINT/v2/$HUAWEICLOUD_SDK_PROJECT_ID/instances/$inst/tasks/$job" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks"][0]["status"])' || echo "?")
  case "$status" in SUCCESS | FAILED) break ;; esac
  step_progress=$(python3 -c 'import json,sys
v=json.loads(sys.argv[1] or "{}")
print(v.get("progress") if v.get("step")=="reassign_partitions" and v.get("progress") is not None else "")' "$run")
  if [ -n "$step_progress" ]; then
    # The bytes first (a JVM tool: seconds), then the progress reported once they were read.
    on3=$(bytes_on 3)
    run=$(curl -sf -H "X-Auth-Token: $token" \
      "$KAFKA_TASKS_ENDPOINT/v2/$HUAWEICLOUD_SDK_PROJECT_ID/instances/$inst/tasks/$job/executor" || true)
    after=$(python3 -c 'import json,sys
v=json.loads(sys.argv[1] or "{}")
print(v.get("progress") if v.get("step")=="reassign_partitions" and v.get("progress") is not None else "")' "$run")
    [ -n "$after" ] && echo "$after $on3" >>"$samples"
  else
    sleep 0.5
  fi
done
end=$(date +%s.%N)
[ "$status" = SUCCESS ] || die "the kafka-tasks task failed: $run"
ours=$(python3 -c "print(round($end - $start, 1))")
say "kafka-tasks: $ours s (estimate $estimate s)"

# --- run 2: kafka-reassign-partitions, back onto 1 and 2 -----------------------------------
python3 - "$topic" "$partitions" >"$work/back.json" <<'EOF'
import json, sys
topic, n = sys.argv[1], int(sys.argv[2])
print(json.dumps({"version": 1, "partitions": [
    {"topic": topic, "partition": p, "replicas": [1, 2] if p % 2 == 0 else [2, 1]} for p in range(n)]}))
EOF
start=$(date +%s.%N)
tool reassign --bootstrap-server "$KAFKA_BOOTSTRAP" --reassignment-json-file "$work/back.json" \
  --execute --throttle "$throttle" >/dev/null
# --verify prints a line per partition; once none is in progress it removes the throttles.
while :; do
  out=$(tool reassign --bootstrap-server "$KAFKA_BOOTSTRAP" --reassignment-json-file "$work/back.json" --verify)
  grep -q "is still in progress" <<<"$out" || break
done
[ "$(grep -c "is completed" <<<"$out")" = "$partitions" ] || die "Kafka's reassignment did not complete: $out"
end=$(date +%s.%N)
theirs=$(python3 -c "print(round($end - $start, 1))")
say "kafka-reassign-partitions: $theirs s"

# --- figures -------------------------------------------------------------------------------
python3 - "$ours" "$theirs" "$total" "$samples" "$partitions" "$mb" "$throttle" "$estimate" <<'EOF'
import sys
ours, theirs, total = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
rows = [tuple(map(int, l.split())) for l in open(sys.argv[4]) if l.strip()]
print(f"partitions {sys.argv[5]}, {sys.argv[6]} MB, throttle {sys.argv[7]} B/s, estimate {sys.argv[8]} s")
print(f"kafka-tasks {ours} s, kafka-reassign-partitions {theirs} s, ratio {ours / theirs:.2f}")
# Each sample: the bytes on the new replicas (read first, over seconds), then the progress
# reported just after. An honest report lies between that sample's bytes and the next one's.
off = []
for i, (reported, on3) in enumerate(rows):
    low = 100 * on3 / total if total else 0
    high = 100 * rows[i + 1][1] / total if i + 1 < len(rows) and total else 100.0
    outside = max(0.0, low - reported - 1, reported - high)
    off.append(outside)
    print(f"  bytes on the new replicas {low:5.1f} %, then reported {reported:3d} % (next bytes {high:5.1f} %)")
if off:
    print(f"progress outside [bytes before, bytes after]: max {max(off):.1f} points over {len(off)} samples")
EOF
