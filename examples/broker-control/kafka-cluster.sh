#!/usr/bin/env bash
# Broker-control program for brokers that are plain processes: the three-node test cluster of
# scripts/kafka-cluster.sh. RUN IN TESTS (tests/api/connected_rolling.rs) against that cluster:
# every restart, static config and upgrade there goes through this file.
#
# kafka-tasks runs it for a bound instance whose binding names it (`broker_control`), with one of:
#   status BROKER                        last line `running PID` or `stopped`
#   restart BROKER                       stop the node (if running), start it, wait until it serves
#   set-static-config BROKER NAME=VALUE… write the values into the node's server properties
#   upgrade BROKER KAFKA_VERSION         restart the node on that Apache Kafka release
#   add-broker BROKER                    start a new broker-only node with that id (4-9), joining the
#                                        cluster's controller quorum; return once it serves
#   set-storage BROKER GB                record the broker's storage (the test cluster's disks are
#                                        the machine's: nothing to grow; a real program grows them)
# The environment is cleared by kafka-tasks but for PATH, HOME, LANG, LC_ALL, TZ, TMPDIR and the
# KT_* variables (KT_BOOTSTRAP, KT_BROKER, KT_TASK_ID, KT_STEP, KT_ATTEMPT, KT_RUN_TOKEN, …), so
# this program's own settings come from a wrapper the operator puts in the broker-control
# directory (`serve --broker-control-dir`), for example:
#   #!/bin/sh
#   KAFKA_CLUSTER_DIR=/srv/kafka-test/cluster BROKER_CONTROL_LOG=/srv/kafka-test/control.log \
#     exec /opt/kafka-tasks/examples/broker-control/kafka-cluster.sh "$@"
#
# Settings: KAFKA_CLUSTER_DIR (the cluster's directory, required), KAFKA_CLUSTER_SCRIPT (default:
# scripts/kafka-cluster.sh of this checkout), BROKER_CONTROL_LOG (a line per action: what it did,
# for which task, attempt and run; default $KAFKA_CLUSTER_DIR/broker-control.log).
#
# Fencing: the highest KT_ATTEMPT seen per task and step is kept beside the log; a run with a
# lower attempt of the same step (a late run of an attempt that kafka-tasks has given up on)
# refuses to act. kafka-tasks' own watcher already kills an attempt's programs before the next
# attempt can start: this is the program's half of the same promise.
set -euo pipefail

die() { printf 'broker-control: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
script=${KAFKA_CLUSTER_SCRIPT:-$here/../../scripts/kafka-cluster.sh}
: "${KAFKA_CLUSTER_DIR:?KAFKA_CLUSTER_DIR must name the cluster directory}"
export KAFKA_CLUSTER_DIR
log=${BROKER_CONTROL_LOG:-$KAFKA_CLUSTER_DIR/broker-control.log}
# A node restarts on the version it last ran unless told otherwise: only `upgrade` tells it.
unset KAFKA_VERSION

verb=${1:-}
broker=${2:-}
[[ "$broker" =~ ^[1-9]$ ]] || die "usage: $0 status|restart|set-static-config|upgrade|add-broker|set-storage BROKER(1-9) [ARGS]"

note() { # note WHAT: one line in the log
  printf '%s %s broker=%s task=%s step=%s attempt=%s run=%s\n' "$(date -u +%FT%T.%3NZ)" "$1" "$broker" \
    "${KT_TASK_ID:-}" "${KT_STEP:-}" "${KT_ATTEMPT:-}" "${KT_RUN_TOKEN:-}" >>"$log"
}

fence() { # refuses a run older than one already seen for the same task and step
  [ -n "${KT_TASK_ID:-}" ] || return 0
  local file="$log.fence" key="${KT_TASK_ID}/${KT_STEP:-}" seen
  touch "$file"
  exec 9>>"$file.lock"
  flock 9
  seen=$(awk -v k="$key" '$1 == k { a = $2 } END { print a + 0 }' "$file")
  if [ "${KT_ATTEMPT:-0}" -lt "$seen" ]; then
    note "refused-stale"
    die "attempt ${KT_ATTEMPT:-0} of $key is older than attempt $seen: refusing to act"
  fi
  printf '%s %s\n' "$key" "${KT_ATTEMPT:-0}" >>"$file"
  flock -u 9
}

case "$verb" in
  status)
    line=$("$script" status 2>/dev/null | grep "^node $broker: " || true)
    if [[ "$line" =~ running,\ pid\ ([0-9]+) ]]; then
      echo "running ${BASH_REMATCH[1]}"
    else
      echo stopped
    fi
    ;;
  restart)
    fence
    note restart
    "$script" restart-node "$broker"
    note restarted
    ;;
  set-static-config)
    fence
    shift 2
    props="$KAFKA_CLUSTER_DIR/node-$broker.properties"
    [ -f "$props" ] || die "no $props"
    for kv in "$@"; do
      name=${kv%%=*}
      value=${kv#*=}
      [[ "$name" =~ ^[a-z][a-z0-9._-]*$ ]] || die "not a config name: $name"
      # One line per value: nothing that would start another property.
      [[ "$value" =~ ^[[:print:]]*$ && "$value" != *\\* ]] || die "$name: the value has characters a properties file would read otherwise"
      tmp=$(mktemp "$props.XXXXXX")
      grep -v "^${name//./\\.}=" "$props" >"$tmp" || true
      printf '%s=%s\n' "$name" "$value" >>"$tmp"
      mv "$tmp" "$props"
      note "set-static-config $name=$value"
    done
    ;;
  upgrade)
    fence
    version=${3:-}
    [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "not a Kafka version: $version"
    note "upgrade $version"
    KAFKA_VERSION=$version "$script" restart-node "$broker"
    note "upgraded $version"
    ;;
  add-broker)
    fence
    note add-broker
    "$script" add-node "$broker"
    note added-broker
    ;;
  set-storage)
    fence
    gb=${3:-}
    [[ "$gb" =~ ^[1-9][0-9]{0,6}$ ]] || die "not a size in GB: $gb"
    printf '%s\n' "$gb" >"$KAFKA_CLUSTER_DIR/node-$broker.storage-gb"
    note "set-storage $gb"
    ;;
  *) die "unknown verb: $verb" ;;
esac
