#!/bin/sh
# The executor the API tests run (tests/api/executors.rs): not an example, a probe.
#
# It records each run as a line "TASK STEP ATTEMPT" in $TEST_DIR/runs.log, keeps its stdin
# and $KT_PARAMS as files, reports progress on stdout, and does what the test asks of the step
# it runs: HOLD_STEP waits for $TEST_DIR/release, FAIL_STEP exits 3 with a message on
# stderr, SLEEP_STEP runs a child that never ends (for timeouts), LOCK_STEPS holds a lock
# directory per step while it runs and logs OVERLAP if another run holds it; CHILD_STEP leaves a
# child running in the background (as a program that starts kafka-configs.sh does) and every run
# logs BESIDE if a child of an earlier attempt of its step is still alive when it starts.
# Every value from the task is quoted: it is data, never code.
set -u
dir="$TEST_DIR"
run="$KT_TASK_ID.$KT_STEP.$KT_ATTEMPT"
cat > "$dir/$run.stdin"
printf '%s' "$KT_PARAMS" > "$dir/$run.params"
echo $$ > "$dir/$run.pid"
printf '%s' "${KT_RUN_TOKEN:-}" > "$dir/$run.token"
for f in "$dir/$KT_TASK_ID.$KT_STEP".*.child.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if [ -e "/proc/$pid/stat" ] && ! grep -q ') Z ' "/proc/$pid/stat"; then
        echo "BESIDE $f" >> "$dir/runs.log"
    fi
done
printf '%s %s %s\n' "$KT_TASK_ID" "$KT_STEP" "$KT_ATTEMPT" >> "$dir/runs.log"
echo '{"progress": 40, "message": "working"}'
echo "plain output of $KT_STEP"
if [ "${LOCK_STEPS:-}" = 1 ]; then
    if mkdir "$dir/lock.$KT_TASK_ID.$KT_STEP" 2>/dev/null; then
        sleep 0.2
        rmdir "$dir/lock.$KT_TASK_ID.$KT_STEP"
    else
        echo "OVERLAP $KT_TASK_ID $KT_STEP" >> "$dir/runs.log"
    fi
fi
if [ "$KT_STEP" = "${CHILD_STEP:-}" ]; then
    sleep 300 &
    echo $! > "$dir/$run.child.pid"
fi
if [ "$KT_STEP" = "${HOLD_STEP:-}" ]; then
    while [ ! -e "$dir/release" ]; do sleep 0.05; done
fi
if [ "$KT_STEP" = "${FAIL_STEP:-}" ]; then
    echo "the broker said no" >&2
    exit 3
fi
if [ "$KT_STEP" = "${SLEEP_STEP:-}" ]; then
    sleep 300 &
    echo $! > "$dir/child.pid"
    wait
fi
echo '{"progress": 100, "message": "done"}'
exit 0
