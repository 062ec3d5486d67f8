#!/bin/sh
# restartInstance, rolling: one broker at a time, waiting for it to be back in sync before the
# next. An `exec` executor, mode "step" (steps pre_check, rolling_restart, health_check).
#
# STATUS: an illustration. Not run in tests and never run against a broker or a cluster here.
#
# Two ways, chosen with RESTART_WITH in the executor file's env:
#   systemd  BROKERS="kafka-0.example kafka-1.example …": `ssh HOST sudo systemctl restart kafka`
#   strimzi  CLUSTER=my-cluster NAMESPACE=kafka: Strimzi's manual rolling update (the operator
#            restarts the pods one by one, keeping partitions available); for Kafka run as a plain
#            StatefulSet, set STATEFULSET=name and `kubectl rollout restart` is used instead.
#
# Idempotent: each broker restarted is recorded in $STATE_DIR/$KT_TASK_ID.restarted, and a
# later attempt (KT_ATTEMPT=2, after a crash) skips those; Strimzi's annotation is set only when
# no roll is under way, and setting it twice asks for one roll.
#
# Needs: jq; KAFKA_BIN and BOOTSTRAP for the health checks; STATE_DIR; ssh or kubectl.
set -eu

say() { jq -cn --argjson p "$1" --arg m "$2" '{progress: $p, message: $m}'; }

# No partition under-replicated: every broker is back and caught up.
in_sync() {
    [ -z "$("$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --under-replicated-partitions)" ]
}

wait_in_sync() {
    while ! in_sync; do sleep 5; done
}

case "$KT_STEP" in
pre_check)
    in_sync || { echo "partitions are under-replicated: not restarting a broker now" >&2; exit 1; }
    say 100 "every partition is in sync"
    ;;
rolling_restart)
    case "${RESTART_WITH:?set RESTART_WITH to systemd or strimzi}" in
    systemd)
        done_file="$STATE_DIR/$KT_TASK_ID.restarted"
        touch "$done_file"
        set -- $BROKERS
        total=$#; n=0
        for host in "$@"; do
            n=$((n + 1))
            if grep -qxF -- "$host" "$done_file"; then
                say $((n * 100 / total)) "$host was restarted by an earlier attempt"
                continue
            fi
            say $(((n - 1) * 100 / total)) "restarting $host"
            ssh -o BatchMode=yes -- "$host" sudo systemctl restart kafka
            wait_in_sync
            printf '%s\n' "$host" >> "$done_file"
            say $((n * 100 / total)) "$host is back and in sync"
        done
        ;;
    strimzi)
        ns="${NAMESPACE:-kafka}"
        if [ -n "${STATEFULSET:-}" ]; then
            kubectl -n "$ns" rollout restart "statefulset/$STATEFULSET"
            kubectl -n "$ns" rollout status "statefulset/$STATEFULSET" --timeout=60m
        else
            pods="strimzipodset/$CLUSTER-kafka"
            kubectl -n "$ns" annotate --overwrite "$pods" strimzi.io/manual-rolling-update=true
            # The operator removes the annotation once every pod has been rolled.
            while kubectl -n "$ns" get "$pods" -o json | jq -e '.metadata.annotations["strimzi.io/manual-rolling-update"]' > /dev/null; do
                say 50 "Strimzi is rolling the brokers"
                sleep 10
            done
        fi
        say 100 "every broker restarted"
        ;;
    *)
        echo "RESTART_WITH must be systemd or strimzi" >&2
        exit 2
        ;;
    esac
    ;;
health_check)
    wait_in_sync
    say 100 "every partition is in sync"
    ;;
*)
    echo "unknown step $KT_STEP" >&2
    exit 2
    ;;
esac
