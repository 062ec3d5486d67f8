"""Replays of the request sequences of the Terraform provider (huaweicloud/terraform-provider-huaweicloud,
huaweicloud/services/kafka/) against the real binary, signed and sent as its Go SDK (chnsz/golangsdk)
does. Each test names the provider file and function it follows. The sequences, paths, headers,
bodies, accepted status codes and waiter states are the provider's; its waits are shortened
(`delay`), since the server runs with --time-scale 0.

test_tofu.py runs the provider itself (create, read, parameters, auto-topic, resize, partition
reassignment, background-task deletion, the background-tasks data source over two pages, plan,
destroy). What stays here is what that run does not reach: the signing details, the data source's
time window, a static parameter's restart, the UpdateInstance fields, the scheduled and estimated
reassignments, and the kernel upgrade.
"""

import time
from datetime import datetime, timedelta, timezone

import golangsdk
import pytest
from golangsdk import GoClient, UnexpectedResponse
from kt_server import Control, Server

# The content types the provider sets with MoreHeaders on some reads.
JSON = {"Content-Type": "application/json"}
JSON_UTF8 = {"Content-Type": "application/json;charset=utf-8"}


def delay(provider_seconds):
    """The provider's Delay/PollInterval (seconds), shortened to between 0.2 and 0.5 s: long enough
    for a waiter still to see the states a server shows between a worker's steps."""
    time.sleep(min(0.5, max(0.2, provider_seconds / 100)))


def wait_for_state(refresh, pending, target, first_delay, poll, timeout=30):
    """helper/resource.StateChangeConf.WaitForStateContext: a state outside `pending` and `target`
    is an error ("unexpected state"), as an error from `refresh` is."""
    delay(first_delay)
    deadline = time.time() + timeout
    while True:
        result, state = refresh()
        if state in target:
            return result
        assert state in pending, f"unexpected state {state!r}, wanted target {target}"
        assert time.time() < deadline, f"timeout while waiting for {target}; last state {state!r}"
        delay(poll)


def instance_state(go, iid):
    """resource_huaweicloud_dms_kafka_instance.go, KafkaInstanceStateRefreshFunc: instances.Get
    (`GET /v2/{project_id}/instances/{instance_id}`, no MoreHeaders); a 404 is the state DELETED."""
    def refresh():
        try:
            body = go.request("GET", go.url("v2/{project_id}/instances/{instance_id}", instance_id=iid)).json()
        except UnexpectedResponse as e:
            if e.status == 404:
                return None, "DELETED"
            raise
        return body, body["status"]
    return refresh


def task_status_by_id(go, iid, task_id, more_headers=None):
    """kafkaInstanceTaskStatusRefreshFunc (instances.GetTask) and common.go getInstanceTask:
    `GET /v2/{project_id}/instances/{instance_id}/tasks/{task_id}`, reading `tasks[0].status`."""
    def refresh():
        body = go.request("GET", go.url("v2/{project_id}/instances/{instance_id}/tasks/{task_id}",
                                        instance_id=iid, task_id=task_id), more_headers=more_headers).json()
        assert body["tasks"], f"failed to find task({task_id})"
        return body["tasks"][0], body["tasks"][0]["status"]
    return refresh


def instance_task_status_refresh(go, iid, task_id, targets=("SUCCESS",)):
    """common.go instanceTaskStatusRefreshFunc: FAILED or DELETED is an error, a target status is
    COMPLETED, anything else PENDING."""
    get = task_status_by_id(go, iid, task_id, JSON_UTF8)

    def refresh():
        task, status = get()
        assert status not in ("FAILED", "DELETED"), f"unexpected status ({status})"
        return task, "COMPLETED" if status in targets else "PENDING"
    return refresh


def create_instance_older_path(go, name):
    """golangsdk openstack/dms/v2/kafka/instances `Create` (createURL: `POST /v2/kafka/{project_id}/instances`,
    OkCodes 200), the create of older provider versions; then resourceDmsKafkaInstanceCreate's wait
    (Pending CREATING, Target RUNNING)."""
    body = {"name": name, "engine": "kafka", "engine_version": "2.7", "storage_space": 300, "broker_num": 3,
            "product_id": "c6.2u4g.cluster", "vpc_id": "vpc-1", "security_group_id": "sg-1",
            "subnet_id": "subnet-1", "available_zones": ["az1"], "storage_spec_code": "dms.physical.storage.high.v2"}
    iid = go.request("POST", go.url("v2/kafka/{project_id}/instances"), json_body=body, ok_codes=(200,)).json()[
        "instance_id"]
    wait_for_state(instance_state(go, iid), ["CREATING"], ["RUNNING"], 300, 15)
    return iid


def stamp(dt):
    return dt.strftime("%Y%m%d%H%M%S")


def test_requests_are_signed_as_golangsdk_signs(go):
    """provider_client.go doRequest + signer/signer.go Sign: every header present at signing is
    signed (Host never is), X-Project-Id comes after and is not."""
    go.request("GET", go.url("v2/{project_id}/instances"), more_headers=JSON)
    method, target, headers = go.sent[-1]
    assert (method, target) == ("GET", f"/v2/{go.project_id}/instances")
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert signed == "accept;content-type;user-agent;x-sdk-date"
    assert headers["X-Project-Id"] == go.project_id


def test_unsigned_project_header_and_body_are_still_checked(server, go, monkeypatch):
    """golangsdk sends X-Project-Id unsigned: one naming another project than the path is refused;
    and the signature covers the JSON body as Go encodes it (a body changed after signing is refused)."""
    other = GoClient(server.url, go.ak, go.sk, "fedcba9876543210fedcba9876543210")
    with pytest.raises(UnexpectedResponse) as err:
        other.request("GET", server.url + f"/v2/{go.project_id}/instances", more_headers=JSON)
    assert (err.value.status, err.value.error_code) == (403, "APIGW.0302")

    real = golangsdk.sign
    monkeypatch.setattr(golangsdk, "sign", lambda m, p, q, h, payload, ak, sk: real(m, p, q, h, payload + b" ", ak, sk))
    with pytest.raises(UnexpectedResponse) as err:
        go.request("POST", go.url("v2/{project_id}/instances/action"), json_body={"action": "restart", "instances": []})
    assert (err.value.status, err.value.error_code) == (401, "APIGW.0301")


def test_background_tasks_data_source_time_window(server, go):
    """data_source_huaweicloud_dms_kafka_background_tasks.go, DataSourceDmsKafkaBackgroundTasksRead with
    `begin_time` and `end_time` (buildQueryBackgroundTasksListPath): `GET …/tasks?limit=10&begin_time=…
    &end_time=…&start=N`, `start` advanced by the tasks read until `task_count` (a string) <= start-1.
    test_tofu.py pages through the tasks without a window."""
    iid = create_instance_older_path(go, "tf-tasks")
    for hours in range(1, 13):  # 12 config changes: 13 tasks with createInstance, two pages of ten
        job = go.request("PUT", go.url("v2/{project_id}/instances/{instance_id}/configs", instance_id=iid),
                         json_body={"kafka_configs": [{"name": "log.retention.hours", "value": str(hours)}]}).json()
        wait_for_state(task_status_by_id(go, iid, job["job_id"]), ["CREATED"], ["SUCCESS"], 2, 2)

    def read(begin_time, end_time):
        path = go.url("v2/{project_id}/instances/{instance_id}/tasks", instance_id=iid) + "?limit=10"
        path += f"&begin_time={begin_time}&end_time={end_time}"
        start, results, queries = 1, [], []
        for _ in range(100):  # the provider loops without bound; a replay must end
            body = go.request("GET", path + f"&start={start}", more_headers=JSON).json()
            queries.append(go.sent[-1][1].split("?", 1)[1])
            tasks = body.get("tasks", [])
            results += [t["id"] for t in tasks]
            start += len(tasks)
            assert isinstance(body["task_count"], str)
            if int(body.get("task_count", "0")) <= start - 1:
                return results, queries
        raise AssertionError("the data source would never stop paging")

    full = go.request("GET", go.url("v2/{project_id}/instances/{instance_id}/tasks", instance_id=iid)
                      + "?limit=100&start=1", more_headers=JSON).json()
    assert len(full["tasks"]) == 13
    now = datetime.now(timezone.utc)
    begin, end = stamp(now - timedelta(hours=1)), stamp(now + timedelta(hours=1))
    windowed, queries = read(begin, end)
    assert windowed == [t["id"] for t in full["tasks"]]
    # The signer sends the query sorted.
    assert queries == [f"begin_time={begin}&end_time={end}&limit=10&start={n}" for n in (1, 11)]

    empty, queries = read(stamp(now + timedelta(days=1)), stamp(now + timedelta(days=2)))
    assert empty == [] and len(queries) == 1


def test_static_parameter_restarts_the_instance(go):
    """resource_huaweicloud_dms_kafka_instance.go, initializeParameters at create with a static
    parameter: modifyParameters (instances.ModifyConfiguration `PUT …/configs`, then
    kafkaInstanceTaskStatusRefreshFunc, Pending CREATED, Target SUCCESS) answers `static_config` > 0,
    so restartKafkaInstance (instances.RebootInstance `POST …/instances/action`, then Pending
    RESTARTING, Target RUNNING). test_tofu.py changes a dynamic parameter only: a restart at
    create costs the provider another 300 s wait."""
    iid = create_instance_older_path(go, "tf-params")
    configs = {"kafka_configs": [{"name": "auto.create.groups.enable", "value": "false"},
                                 {"name": "log.retention.hours", "value": "48"}]}
    res = go.request("PUT", go.url("v2/{project_id}/instances/{instance_id}/configs", instance_id=iid),
                     json_body=configs).json()
    assert (res["dynamic_config"], res["static_config"]) == (1, 1)
    wait_for_state(task_status_by_id(go, iid, res["job_id"]), ["CREATED"], ["SUCCESS"], 2, 2)
    shown = go.request("GET", go.url("v2/{project_id}/instances/{instance_id}/configs", instance_id=iid),
                       more_headers=JSON).json()["kafka_configs"]
    values = {c["name"]: c["value"] for c in shown}
    assert (values["auto.create.groups.enable"], values["log.retention.hours"]) == ("false", "48")

    # static_config > 0: restartRequired
    go.request("POST", go.url("v2/{project_id}/instances/action"),
               json_body={"action": "restart", "instances": [iid]})
    wait_for_state(instance_state(go, iid), ["RESTARTING"], ["RUNNING"], 5, 5)
    tasks = go.request("GET", go.url("v2/{project_id}/instances/{instance_id}/tasks", instance_id=iid)).json()
    assert [t["name"] for t in tasks["tasks"]].count("restartInstance") == 1, tasks


def test_instance_create_wait_update_delete(go):
    """resource_huaweicloud_dms_kafka_instance.go: createKafkaInstanceWithFlavor (instances.CreateInstance,
    `POST /v2/{project_id}/kafka/instances`, OkCodes 200) and its wait (Pending CREATING, Target
    RUNNING); resourceDmsKafkaInstanceRead (instances.Get); resourceDmsKafkaInstanceUpdate for
    name/description/maintain window/security group/retention policy (instances.Update,
    `PUT /v2/{project_id}/instances/{instance_id}`, OkCodes 204; `description` always sent, `name`
    only when changed, the rest omitempty), then RetryContextWithWaitForState's wait for RUNNING and
    a read; resourceDmsKafkaInstanceDelete (instances.Delete, OkCodes 204, wait for the 404).
    test_tofu.py runs create, read and delete with the provider itself, and changes only the
    description: the other UpdateInstance fields are replayed here."""
    create = {"name": "tf-kafka", "engine": "kafka", "engine_version": "2.7", "storage_space": 300,
              "broker_num": 3, "product_id": "c6.2u4g.cluster", "vpc_id": "vpc-1", "security_group_id": "sg-1",
              "subnet_id": "subnet-1", "available_zones": ["az1"],
              "storage_spec_code": "dms.physical.storage.high.v2", "maintain_begin": "02:00:00",
              "maintain_end": "06:00:00", "retention_policy": "time_base"}
    res = go.request("POST", go.url("v2/{project_id}/kafka/instances"), json_body=create, ok_codes=(200,)).json()
    iid = res["instance_id"]
    wait_for_state(instance_state(go, iid), ["CREATING"], ["RUNNING"], 300, 15)
    shown = instance_state(go, iid)()[0]
    assert (shown["name"], shown["engine_version"], shown["broker_num"]) == ("tf-kafka", "2.7", 3)

    update = {"name": "tf-kafka-renamed", "description": "managed by terraform", "maintain_begin": "22:00:00",
              "maintain_end": "02:00:00", "security_group_id": "sg-2", "retention_policy": "produce_reject"}
    res = go.request("PUT", go.url("v2/{project_id}/instances/{instance_id}", instance_id=iid),
                     json_body=update, ok_codes=(204,))
    assert res.raw == b""
    shown = wait_for_state(instance_state(go, iid), ["PENDING"], ["RUNNING"], 1, 10)
    assert {k: shown.get(k) for k in update} == update

    # A second update that clears the description: the provider sends `"description":""`.
    go.request("PUT", go.url("v2/{project_id}/instances/{instance_id}", instance_id=iid),
               json_body={"description": "", "security_group_id": "sg-2"}, ok_codes=(204,))
    shown = instance_state(go, iid)()[0]
    # The provider decodes into a Go struct: an absent `description` and "" read the same.
    assert (shown["name"], shown.get("description") or "") == ("tf-kafka-renamed", "")

    go.request("DELETE", go.url("v2/{project_id}/instances/{instance_id}", instance_id=iid), ok_codes=(204,))
    wait_for_state(instance_state(go, iid), ["DELETING", "RUNNING", "ERROR"], ["DELETED"], 120, 15)


REASSIGN = "v2/kafka/{project_id}/instances/{instance_id}/reassign"


def test_partition_reassign_scheduled_returns_schedule_id(go):
    """resource_huaweicloud_dms_kafka_partition_reassign.go, resourceDmsKafkaPartitionReassignCreate with
    `is_schedule` and `execute_at`: the answer's `schedule_id` becomes `task_id`, nothing is waited
    for. (The provider reads no further; the scheduled list showing it is this replay's check.)"""
    iid = create_instance_older_path(go, "tf-reassign-scheduled")
    at = int(time.time() * 1000) + 3_600_000
    body = {"reassignments": [{"topic": "orders", "brokers": [0, 1]}], "is_schedule": True, "execute_at": at}
    res = go.request("POST", go.url(REASSIGN, instance_id=iid), json_body=body).json()
    assert "job_id" not in res and "reassignment_time" not in res
    sid = res["schedule_id"]
    jobs = go.request("GET", go.url("v2/{project_id}/instances/{instance_id}/scheduled-tasks", instance_id=iid),
                      more_headers=JSON).json()["jobs"]
    assert [(j["id"], j["name"], j["status"]) for j in jobs] == [(sid, "kafkaPartitionReassign", "CREATED")]


def test_partition_reassign_time_estimate(go):
    """resource_huaweicloud_dms_kafka_partition_reassign.go, resourceDmsKafkaPartitionReassignCreate with
    `time_estimate`: the answer's `reassignment_time` is kept; no task is created."""
    iid = create_instance_older_path(go, "tf-reassign-estimate")
    before = go.request("GET", go.url("v2/{project_id}/instances/{instance_id}/tasks", instance_id=iid)
                        + "?limit=10&start=1", more_headers=JSON).json()["task_count"]
    body = {"reassignments": [{"topic": "orders", "brokers": [0, 1, 2]}], "time_estimate": True}
    res = go.request("POST", go.url(REASSIGN, instance_id=iid), json_body=body).json()
    assert "job_id" not in res and "schedule_id" not in res
    assert isinstance(res["reassignment_time"], int) and res["reassignment_time"] >= 0
    after = go.request("GET", go.url("v2/{project_id}/instances/{instance_id}/tasks", instance_id=iid)
                       + "?limit=10&start=1", more_headers=JSON).json()["task_count"]
    assert after == before


def test_upgrade_waiter(server, go):
    """resource_huaweicloud_dms_kafka_instance_upgrade.go, resourceInstanceUpgradeCreate and
    buildUpgradeInstanceBodyParams: `POST /v2/{project_id}/kafka/instances/{instance_id}/upgrade`
    (MoreHeaders Content-Type: application/json) with `{"is_schedule":false}`; the `job_id` is waited
    for by common.go waitForInstanceTaskStatusComplete (`GET …/tasks/{job_id}`, `tasks[0].status`).
    A scheduled upgrade (`is_schedule` true, `execute_at`) is not waited for. The instance must be
    behind the latest kernel: a newer build is added first (the operator's `kernels add`)."""
    iid = create_instance_older_path(go, "tf-upgrade")
    server.add_kernel("2.7", "2.7.1-h0.cbu.dms.401.r0")
    upgrade = go.url("v2/{project_id}/kafka/instances/{instance_id}/upgrade", instance_id=iid)
    res = go.request("POST", upgrade, json_body={"is_schedule": False}, more_headers=JSON).json()
    task = wait_for_state(instance_task_status_refresh(go, iid, res["job_id"]), ["PENDING"], ["COMPLETED"], 20, 30)
    assert task["name"] == "upgradeInstance"
    assert instance_state(go, iid)()[0]["engine_version"] == "2.7"

    server.add_kernel("2.7", "2.7.1-h0.cbu.dms.402.r0")
    at = int(time.time() * 1000) + 3_600_000
    res = go.request("POST", upgrade, json_body={"is_schedule": True, "execute_at": at}, more_headers=JSON).json()
    assert res.get("schedule_id") and not res.get("job_id")


# ---- test control (`serve --test-control`): injected faults, as the provider meets them ----------

@pytest.fixture(scope="module")
def control_server():
    s = Server("--time-scale", "0", "--test-control")
    yield s
    s.stop()


@pytest.fixture
def control(control_server):
    c = Control(control_server.url, control_server.admin)
    c("reset")
    yield c
    c("faults", "remove")


def provider_client(server, max_retries=0, slept=None):
    """The provider's client with its `max_retries`; its backoff minutes are recorded, not slept
    (a minute of the provider's is 0.2 s here, as `delay` shortens its waits)."""
    cred = server.admin

    def backoff(minutes):
        if slept is not None:
            slept.append(minutes)
        time.sleep(0.2)
    return GoClient(server.url, cred["access_key"], cred["secret_key"], cred["project_id"],
                    max_retries=max_retries, backoff=backoff)


def test_an_injected_failed_restart_fails_the_providers_task_waiter(control_server, control):
    """common.go instanceTaskStatusRefreshFunc on a restart the server was told to fail: the waiter
    stops with "unexpected status (FAILED)", as for a real failed task, and the instance's own
    waiter sees RUNNING again."""
    go = provider_client(control_server)
    iid = create_instance_older_path(go, "tf-injected-failure")
    control.inject(task_name="restartInstance", fail_step={"reason": "injected: broker 1 is gone"})
    go.request("POST", go.url("v2/{project_id}/instances/action"),
               json_body={"action": "restart", "instances": [iid]})
    tasks = go.request("GET", go.url("v2/{project_id}/instances/{instance_id}/tasks", instance_id=iid)).json()
    task_id = next(t["id"] for t in tasks["tasks"] if t["name"] == "restartInstance")
    with pytest.raises(AssertionError, match=r"unexpected status \(FAILED\)"):
        wait_for_state(instance_task_status_refresh(go, iid, task_id), ["PENDING"], ["COMPLETED"], 2, 2)
    wait_for_state(instance_state(go, iid), ["RESTARTING"], ["RUNNING"], 5, 5)


def test_an_injected_429_is_retried_with_the_providers_backoff(control_server, control):
    """golangsdk doRequest on a 429 with the provider's max_retries set: two injected 429s on the
    instance read cost two backoffs of 1 and 2 minutes (2^retries), then the read succeeds; with
    max_retries = 0 the first 429 is the provider's error, carrying the APIGW code in its body."""
    slept = []
    go = provider_client(control_server, max_retries=5, slept=slept)
    iid = create_instance_older_path(go, "tf-throttled")
    control.inject(operation="ShowInstance", error={"status_code": 429}, times=2)
    body, state = instance_state(go, iid)()
    assert state == "RUNNING" and slept == [1, 2]
    assert control("faults", "list")["rules"][0]["fired"] == 2

    control.inject(operation="ShowInstance", error={"status_code": 429}, times=1)
    impatient = provider_client(control_server)
    with pytest.raises(UnexpectedResponse) as err:
        instance_state(impatient, iid)()
    assert err.value.status == 429
    assert err.value.error_code == "APIGW.0308"
