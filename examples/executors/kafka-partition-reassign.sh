#!/bin/sh
# kafkaPartitionReassign with Kafka's own kafka-reassign-partitions.sh: an `exec` executor,
# mode "task" (run once; it reports {"step": …} as it moves from pre_check to
# reassign_partitions to verify, and its exit ends the task).
#
# STATUS: an illustration, never run against a broker here. Its plan building is run by the
# tests against a stub kafka-reassign-partitions.sh (tests/api/executors.rs,
# "the_reassign_example_…"); the pieces it builds on (the task on stdin and in KT_*, progress
# lines, step lines, attempts) are what tests/api/executors.rs tests with its own probe.
#
# Idempotent: the reassignment plan is written once per task ($STATE_DIR/$KT_TASK_ID.json) and
# reused by a later attempt; --execute is skipped when --verify shows the plan under way or done,
# so a run interrupted by a crash (KT_ATTEMPT=2) resumes watching instead of starting again.
#
# Needs: jq; in the executor file's env: KAFKA_BIN, BOOTSTRAP, STATE_DIR (a directory kept across
# restarts), optionally ADMIN_CONFIG.
set -eu

say() { jq -cn --argjson p "$1" --arg m "$2" '{progress: $p, message: $m}'; }
step() { jq -cn --arg s "$1" '{step: $s}'; }
admin() { if [ -n "${ADMIN_CONFIG:-}" ]; then printf -- '--command-config\n%s\n' "$ADMIN_CONFIG"; fi; }
reassign() {
    # shellcheck disable=SC2046
    "$KAFKA_BIN/kafka-reassign-partitions.sh" --bootstrap-server "$BOOTSTRAP" $(admin) "$@"
}

plan="$STATE_DIR/$KT_TASK_ID.json"
throttle=$(printf '%s' "$KT_PARAMS" | jq -r '.throttle // empty')

# pre_check: build the plan once. Explicit assignments are taken as given; a topic named with
# brokers only gets the tool's own proposal (--generate) over those brokers.
if [ ! -s "$plan" ]; then
    say 5 "building the reassignment plan"
    explicit=$(printf '%s' "$KT_PARAMS" | jq -c '{version: 1, partitions: [.reassignments[]
        | select(.assignment) | .topic as $t | .assignment[]
        | {topic: $t, partition: .partition, replicas: .partition_brokers}]}')
    printf '%s' "$explicit" > "$plan.explicit"
    # One entry a line as compact JSON, read whole: jq -c escapes every tab and newline inside
    # a string, so no topic can be read back as more than one (topic, brokers) pair. The
    # topic goes to the tool only inside the JSON file jq writes, the brokers as one argument.
    printf '%s' "$KT_PARAMS" | jq -c '.reassignments[] | select(.assignment | not)' |
    while IFS= read -r entry; do
        printf '%s' "$entry" | jq -c '{version: 1, topics: [{topic: .topic}]}' > "$plan.topics"
        brokers=$(printf '%s' "$entry" | jq -r '.brokers | map(tostring) | join(",")')
        reassign --generate --topics-to-move-json-file "$plan.topics" --broker-list "$brokers" |
            sed -n '/Proposed partition reassignment configuration/{n;p;}' > "$plan.generated"
        jq -c --slurpfile g "$plan.generated" '.partitions += $g[0].partitions' "$plan.explicit" > "$plan.next"
        mv "$plan.next" "$plan.explicit"
    done
    mv "$plan.explicit" "$plan"
fi
total=$(jq '.partitions | length' "$plan")

step reassign_partitions
status=$(reassign --verify --reassignment-json-file "$plan" || true)
if printf '%s\n' "$status" | grep -q "is still in progress\|is completed\|is complete"; then
    say 0 "the reassignment is under way already (attempt $KT_ATTEMPT): watching it"
else
    if [ -n "$throttle" ] && [ "$throttle" != "-1" ]; then
        reassign --execute --reassignment-json-file "$plan" --throttle "$throttle"
    else
        reassign --execute --reassignment-json-file "$plan"
    fi
fi

# Progress from --verify: the share of partitions whose reassignment is complete.
while :; do
    status=$(reassign --verify --reassignment-json-file "$plan" || true)
    complete=$(printf '%s\n' "$status" | grep -c "is complete" || true)
    say $((total > 0 ? complete * 100 / total : 100)) "$complete of $total partitions moved"
    [ "$complete" -ge "$total" ] && break
    if printf '%s\n' "$status" | grep -q "failed"; then
        printf '%s\n' "$status" >&2
        exit 1
    fi
    sleep 10
done

step verify
# A final --verify also removes the replication throttle the reassignment set.
reassign --verify --reassignment-json-file "$plan" > /dev/null
say 100 "every partition is on its new brokers"
