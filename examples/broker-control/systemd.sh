#!/usr/bin/env bash
# Broker-control program for brokers run by systemd, one host per broker, reached over ssh.
# NOT RUN HERE: no systemd host can be set up on the machines this project is built on. Adapt it
# and try it on a test cluster first. The interface is the one kafka-tasks defines
# (examples/broker-control/README.md); scripts/kafka-cluster.sh's counterpart,
# examples/broker-control/kafka-cluster.sh, is the one the tests run.
#
# Settings (put them in a wrapper in the broker-control directory, since kafka-tasks clears the
# environment): BROKER_HOSTS ("1=kafka-1.internal 2=kafka-2.internal …"), SSH_OPTS, KAFKA_UNIT
# (default kafka.service), KAFKA_CONFIG (default /etc/kafka/server.properties), KAFKA_RELEASES (the
# directory holding one unpacked release per version, default /opt/kafka/releases) and
# KAFKA_CURRENT (the link the unit's ExecStart goes through, default /opt/kafka/current).
set -euo pipefail

die() { printf 'broker-control: %s\n' "$*" >&2; exit 1; }

verb=${1:-}
broker=${2:-}
[[ "$broker" =~ ^[0-9]+$ ]] || die "usage: $0 status|restart|set-static-config|upgrade BROKER [ARGS]"
host=$(tr ' ' '\n' <<<"${BROKER_HOSTS:?}" | sed -n "s/^$broker=//p")
[ -n "$host" ] || die "no host for broker $broker in BROKER_HOSTS"
unit=${KAFKA_UNIT:-kafka.service}
config=${KAFKA_CONFIG:-/etc/kafka/server.properties}
releases=${KAFKA_RELEASES:-/opt/kafka/releases}
current=${KAFKA_CURRENT:-/opt/kafka/current}
# shellcheck disable=SC2086 # options, split on purpose
on() { ssh ${SSH_OPTS:-} -- "$host" "$@"; }

case "$verb" in
  status)
    # The main pid and its start time name the incarnation: both change exactly when the unit restarts.
    state=$(on systemctl show -p ActiveState -p MainPID -p ExecMainStartTimestampMonotonic "$unit")
    pid=$(sed -n 's/^MainPID=//p' <<<"$state")
    since=$(sed -n 's/^ExecMainStartTimestampMonotonic=//p' <<<"$state")
    if grep -qx 'ActiveState=active' <<<"$state" && [ "${pid:-0}" != 0 ]; then
      echo "running $pid-$since"
    else
      echo stopped
    fi
    ;;
  restart)
    # `systemctl restart` returns once the new process has started; kafka-tasks waits for the
    # broker to register again.
    on sudo systemctl restart "$unit"
    ;;
  set-static-config)
    shift 2
    for kv in "$@"; do
      name=${kv%%=*}
      value=${kv#*=}
      [[ "$name" =~ ^[a-z][a-z0-9._-]*$ ]] || die "not a config name: $name"
      [[ "$value" =~ ^[A-Za-z0-9._:,/-]*$ ]] || die "$name: a value this script does not pass through a remote shell"
      # Set, not add: a second run leaves the file as the first did.
      on sudo sed -i -e "/^${name//./\\.}=/d" -e "\$a ${name}=${value}" "$config"
    done
    ;;
  upgrade)
    version=${3:-}
    [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "not a Kafka version: $version"
    on test -d "$releases/kafka_2.13-$version" || die "$host has no $releases/kafka_2.13-$version"
    on sudo ln -sfn "$releases/kafka_2.13-$version" "$current"
    on sudo systemctl restart "$unit"
    ;;
  *) die "unknown verb: $verb" ;;
esac
