"""The example of docs/notes/control.md ("Testing your automation"), run as it is written there:
a pytest fixture that resets the server before each test, a test that injects a failure, and the
assertions on what the automation under test did about it. The automation here is a small
restart routine written against the official Python SDK, as a runbook would be."""

import os
import time

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkkafka.v2 import (
    BatchRestartOrDeleteInstanceReq, BatchRestartOrDeleteInstancesRequest, CreateInstanceByEngineReq,
    CreateInstanceByEngineRequest, ListBackgroundTasksRequest, ShowBackgroundTaskRequest, ShowInstanceRequest,
)

from sdk_server import SdkServer
from kt_server import Control


# ---- the automation under test -------------------------------------------------------------

class RestartFailed(Exception):
    pass


def restart(client, instance_id, timeout=30):
    """Restarts an instance and waits for its task; raises RestartFailed if the task fails."""
    client.batch_restart_or_delete_instances(BatchRestartOrDeleteInstancesRequest(
        body=BatchRestartOrDeleteInstanceReq(instances=[instance_id], action="restart")))
    tasks = client.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance_id)).tasks
    task_id = next(t.id for t in tasks if t.name == "restartInstance")
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = client.show_background_task(
            ShowBackgroundTaskRequest(instance_id=instance_id, task_id=task_id)).tasks[0]
        if task.status == "SUCCESS":
            return task_id
        if task.status == "FAILED":
            raise RestartFailed(task_id)
        time.sleep(0.05)
    raise TimeoutError(task_id)


# ---- the server, and test control through the kafka-tasks CLI (kt_server.Control) --------

@pytest.fixture(scope="module")
def kt():
    """A kafka-tasks server started with `serve --test-control` (here: the built binary)."""
    server = SdkServer("--test-control", "--time-scale", "0")
    yield server
    server.stop()


@pytest.fixture
def control(kt):
    """A clean server for every test: no instance, no task, no fault rule."""
    c = Control(kt.url, kt.admin)
    c("reset")
    yield c
    c("faults", "remove")


@pytest.fixture
def client(kt):
    return kt.client(kt.admin)


@pytest.fixture
def instance(client, control):
    res = client.create_instance_by_engine(CreateInstanceByEngineRequest(engine="kafka", body=CreateInstanceByEngineReq(
        name="under-test", engine="kafka", engine_version="2.7", broker_num=3, storage_space=300,
        product_id="c6.2u4g.cluster", vpc_id="vpc-1", security_group_id="sg-1", subnet_id="subnet-1",
        available_zones=["az1"], storage_spec_code="dms.physical.storage.high.v2")))
    deadline = time.time() + 20
    while client.show_instance(ShowInstanceRequest(instance_id=res.instance_id)).status != "RUNNING":
        assert time.time() < deadline
        time.sleep(0.05)
    return res.instance_id


# ---- the tests ------------------------------------------------------------------------------

def test_a_failed_restart_is_reported_and_the_instance_stays_usable(client, control, instance):
    control.inject(task_name="restartInstance", step="health_check",
                   fail_step={"reason": "broker 2 did not rejoin the ISR"})

    with pytest.raises(RestartFailed):
        restart(client, instance)

    # The instance is back to RUNNING, as after a real failure, and the rule fired once.
    assert client.show_instance(ShowInstanceRequest(instance_id=instance)).status == "RUNNING"
    assert control("faults", "list")["rules"][0]["fired"] == 1


def test_throttled_status_calls_are_retried_by_the_sdk(kt, control, instance):
    # The automation's client retries 429s (the SDK's retry_times; it honours Retry-After).
    patient = kt.client(kt.admin, retry_times=3)
    control.inject(operation="ShowBackgroundTask", error={"status_code": 429, "retry_after": 1}, times=2)

    restart(patient, instance)

    assert control("faults", "list")["rules"][0]["fired"] == 2


def test_without_retries_a_throttled_call_fails_the_automation(client, control, instance):
    control.inject(operation="ShowBackgroundTask", error={"status_code": 429}, times=1)

    with pytest.raises(ClientRequestException) as err:
        restart(client, instance)
    # The SDK's own error for a 429 (its transport refuses it before reading the body).
    assert err.value.status_code == 429


def test_the_documented_example_is_this_file():
    """Every line of the Python blocks of docs/notes/control.md is in this file or kt_server.py,
    so that the example people copy is the one that runs here."""
    here = os.path.dirname(os.path.abspath(__file__))
    doc = os.path.join(here, "..", "..", "docs", "notes", "control.md")
    with open(doc, encoding="utf-8") as f:
        blocks = f.read().split("```python\n")[1:]
    assert blocks, "the document has no Python example"
    with open(__file__, encoding="utf-8") as f, open(os.path.join(here, "kt_server.py"), encoding="utf-8") as g:
        code = f.read() + g.read()
    for block in blocks:
        for line in block.split("```")[0].splitlines():
            assert line.strip() == "" or line in code, f"documented but not run: {line!r}"
