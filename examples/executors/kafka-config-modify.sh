#!/bin/sh
# kafkaConfigModify with Kafka's own kafka-configs.sh: an `exec` executor, mode "step".
#
# STATUS: run by the tests against a stub kafka-configs.sh that records its arguments
# (tests/api/executors.rs, "the_config_example_…"); never run against a real broker here.
#
# Steps (src/domain/operation.rs): pre_check, apply_config, and rolling_restart when a static
# config changed. The task comes as data: $KT_STEP names the step, $KT_PARAMS is the operation's
# params, e.g. {"kafka_configs":[{"name":"log.retention.hours","old_value":"72","new_value":"24"}]}
# or {"old_auto_status":false,"new_auto_status":true}. Nothing from the task is ever evaluated:
# values are read with jq and passed as single arguments.
#
# Idempotent: apply_config sets absolute values (never "add one"), and skips a config that
# already has its new value, so a step run again after a crash (KT_ATTEMPT=2) does no harm.
#
# Needs: jq, and in the executor file's env: KAFKA_BIN (the directory of kafka-configs.sh),
# BOOTSTRAP (host:port), optionally ADMIN_CONFIG (a --command-config file with the SASL/TLS
# settings: credentials stay in that file, never on the command line), and RESTART_EXECUTOR (the
# rolling-restart executor, run for rolling_restart).
set -eu

say() { # progress and message as one JSON line on stdout
    jq -cn --argjson p "$1" --arg m "$2" '{progress: $p, message: $m}'
}

configs() {
    if [ -n "${ADMIN_CONFIG:-}" ]; then
        "$KAFKA_BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" "$@"
    else
        "$KAFKA_BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" "$@"
    fi
}

# name<TAB>new value, one per line; auto topic creation is a broker config too.
changes() {
    printf '%s' "$KT_PARAMS" | jq -r '
        if has("kafka_configs") then .kafka_configs[] | "\(.name)\t\(.new_value)"
        else "auto.create.topics.enable\t\(.new_auto_status)" end'
}

case "$KT_STEP" in
pre_check)
    say 10 "describing the cluster's default broker configs"
    configs --describe --entity-type brokers --entity-default > /dev/null
    say 100 "the cluster answers"
    ;;
apply_config)
    current=$(configs --describe --entity-type brokers --entity-default)
    total=$(changes | wc -l); n=0
    changes | while IFS="$(printf '\t')" read -r name value; do
        n=$((n + 1))
        if printf '%s\n' "$current" | grep -qF -- "$name=$value "; then
            say $((n * 100 / total)) "$name is $value already"
            continue
        fi
        # One argument: name=value, exactly as validated by the API (no shell expansion).
        configs --alter --entity-type brokers --entity-default --add-config "$name=$value"
        say $((n * 100 / total)) "$name set to $value"
    done
    ;;
rolling_restart)
    # A static config needs the brokers restarted one by one: the restart example does that.
    exec "${RESTART_EXECUTOR:?set RESTART_EXECUTOR to the rolling-restart executor}"
    ;;
*)
    echo "unknown step $KT_STEP" >&2
    exit 2
    ;;
esac
