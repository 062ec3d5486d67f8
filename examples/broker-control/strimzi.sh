#!/usr/bin/env bash
# Broker-control program for a Kafka cluster run by the Strimzi operator on Kubernetes.
# NOT RUN HERE: no Kubernetes cluster can be set up on the machines this project is built on.
# Adapt it and try it on a test cluster first. The interface is the one kafka-tasks defines
# (examples/broker-control/README.md).
#
# Strimzi owns its pods: restarting one is asking Strimzi (the `strimzi.io/manual-rolling-update`
# annotation on the pod), which then makes its own availability checks; static configs and the
# Kafka version live in the Kafka (or KafkaNodePool) resource, and a change there makes Strimzi
# roll every broker itself. So `set-static-config` and `upgrade` here change the resource once
# and are no-ops afterwards, and kafka-tasks' own one-at-a-time roll mostly waits for Strimzi's.
#
# Settings (a wrapper in the broker-control directory): KAFKA_CLUSTER (the Kafka resource's
# name), KAFKA_NAMESPACE, KAFKA_POOL (the node pool whose pods are the brokers; pods are named
# <cluster>-<pool>-<node id>), KUBECTL (default kubectl).
set -euo pipefail

die() { printf 'broker-control: %s\n' "$*" >&2; exit 1; }

verb=${1:-}
broker=${2:-}
[[ "$broker" =~ ^[0-9]+$ ]] || die "usage: $0 status|restart|set-static-config|upgrade BROKER [ARGS]"
kubectl=${KUBECTL:-kubectl}
ns=${KAFKA_NAMESPACE:?}
cluster=${KAFKA_CLUSTER:?}
pod="$cluster-${KAFKA_POOL:?}-$broker"
k() { "$kubectl" -n "$ns" "$@"; }

case "$verb" in
  status)
    # A pod's uid changes when Strimzi replaces it; its container's restart count when the
    # container alone restarts.
    out=$(k get pod "$pod" -o 'jsonpath={.metadata.uid} {.status.phase} {.status.containerStatuses[0].restartCount}' 2>/dev/null || true)
    read -r uid phase restarts <<<"$out"
    if [ "${phase:-}" = Running ]; then
      echo "running $uid-$restarts"
    else
      echo stopped
    fi
    ;;
  restart)
    k annotate pod "$pod" strimzi.io/manual-rolling-update=true --overwrite
    # Strimzi picks the annotation up at its next reconciliation; wait for the pod to be replaced.
    old=$(k get pod "$pod" -o 'jsonpath={.metadata.uid}')
    for _ in $(seq 1 600); do
      now=$(k get pod "$pod" -o 'jsonpath={.metadata.uid}' 2>/dev/null || true)
      [ -n "$now" ] && [ "$now" != "$old" ] && exit 0
      sleep 2
    done
    die "Strimzi did not replace $pod within 20 minutes"
    ;;
  set-static-config)
    shift 2
    patch='{"spec":{"kafka":{"config":{'
    sep=
    for kv in "$@"; do
      name=${kv%%=*}
      value=${kv#*=}
      [[ "$name" =~ ^[a-z][a-z0-9._-]*$ ]] || die "not a config name: $name"
      [[ "$value" =~ ^[A-Za-z0-9._:,/-]*$ ]] || die "$name: a value this script does not put into JSON unquoted"
      patch+="$sep\"$name\":\"$value\""
      sep=,
    done
    patch+='}}}}'
    k patch kafka "$cluster" --type merge -p "$patch"
    ;;
  upgrade)
    version=${3:-}
    [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "not a Kafka version: $version"
    k patch kafka "$cluster" --type merge -p "{\"spec\":{\"kafka\":{\"version\":\"$version\"}}}"
    ;;
  *) die "unknown verb: $verb" ;;
esac
