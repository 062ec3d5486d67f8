"""Test control (`serve --test-control`) seen through the official Python SDK: injected faults
reach it as the real ones would (its error types, its DMS codes, its own retries), the same seed
gives the same faults twice, and a scheduled upgrade fires once the clock is advanced past it."""

import json
import time

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, ServerResponseException
from huaweicloudsdkkafka.v2 import (
    BatchRestartOrDeleteInstanceReq, BatchRestartOrDeleteInstancesRequest, ListBackgroundTasksRequest,
    ListInstancesRequest, ListScheduledTasksRequest, ShowBackgroundTaskRequest, ShowInstanceRequest,
    ShowUpgradeInstanceVersionRequest, UpgradeInstanceReq, UpgradeInstanceRequest,
)

from kt_server import Control
from test_testing_your_automation import instance, kt  # noqa: F401 (fixtures)


@pytest.fixture
def control(kt):  # noqa: F811
    c = Control(kt.url, kt.admin)
    c("reset")
    yield c
    c("faults", "remove")


@pytest.fixture
def client(kt):  # noqa: F811
    return kt.client(kt.admin)


def wait(check, timeout=20):
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "condition never held"
        time.sleep(0.05)


def test_an_injected_503_and_403_reach_the_sdk_as_its_error_types_with_the_dms_codes(client, control):
    control.inject(operation="ListInstances", error={"status_code": 503}, times=1)
    control.inject(operation="ListInstances", error={"status_code": 403}, times=1)
    with pytest.raises(ServerResponseException) as err:
        client.list_instances(ListInstancesRequest())
    assert err.value.status_code == 503 and err.value.error_code == "DMS.00503001"
    with pytest.raises(ClientRequestException) as err:
        client.list_instances(ListInstancesRequest())
    assert err.value.status_code == 403 and err.value.error_code == "DMS.00403003"
    assert client.list_instances(ListInstancesRequest()).instance_num == 0


def test_an_injected_failure_is_a_failed_task_to_the_sdk(client, control, instance):  # noqa: F811
    control.inject(task_name="restartInstance", fail_step={"reason": "injected"})
    client.batch_restart_or_delete_instances(BatchRestartOrDeleteInstancesRequest(
        body=BatchRestartOrDeleteInstanceReq(instances=[instance], action="restart")))
    task = client.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance)).tasks[0]
    assert task.name == "restartInstance"
    wait(lambda: client.show_background_task(
        ShowBackgroundTaskRequest(instance_id=instance, task_id=task.id)).tasks[0].status == "FAILED")
    assert client.show_instance(ShowInstanceRequest(instance_id=instance)).status == "RUNNING"


def test_the_same_seed_gives_the_same_faults_twice(client, control):
    rule = json.dumps({"operation": "ListInstances", "error": {"status_code": 500}, "probability": 0.5, "seed": 7})
    runs = []
    for _ in range(2):
        control("faults", "replace", rule)
        seen = []
        for _ in range(16):
            try:
                client.list_instances(ListInstancesRequest())
                seen.append(200)
            except ServerResponseException as e:
                assert e.error_code == "DMS.00500000"
                seen.append(e.status_code)
        runs.append(seen)
    assert runs[0] == runs[1]
    assert 200 in runs[0] and 500 in runs[0]


def test_a_scheduled_upgrade_fires_after_the_clock_is_advanced(kt, client, control, instance):  # noqa: F811
    kt.add_kernel("2.7", "2.7.1-h0.cbu.dms.401.r0")
    now = control("clock", "show")["now_ms"]
    client.upgrade_instance(UpgradeInstanceRequest(
        instance_id=instance, body=UpgradeInstanceReq(is_schedule=True, execute_at=now + 3 * 3_600_000)))
    jobs = client.list_scheduled_tasks(ListScheduledTasksRequest(instance_id=instance, start="1", limit="10")).jobs
    assert [j.status for j in jobs] == ["CREATED"]
    time.sleep(0.3)
    assert client.list_scheduled_tasks(
        ListScheduledTasksRequest(instance_id=instance, start="1", limit="10")).jobs[0].status == "CREATED"

    control("clock", "advance", "3h")

    wait(lambda: client.list_scheduled_tasks(
        ListScheduledTasksRequest(instance_id=instance, start="1", limit="10")).jobs[0].status == "SUCCESS")
    v = client.show_upgrade_instance_version(ShowUpgradeInstanceVersionRequest(instance_id=instance))
    assert v.current_version == "2.7.1-h0.cbu.dms.401.r0"
