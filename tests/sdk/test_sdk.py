"""The official Python SDK (huaweicloudsdkkafka) against the running binary, unmodified."""

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkkafka.v2 import (
    BatchRestartOrDeleteInstanceReq, BatchRestartOrDeleteInstancesRequest, CreateInstanceByEngineReq,
    CreateInstanceByEngineRequest, CreateKafkaReassignmentTaskRequest, DeleteBackgroundTaskRequest,
    DeleteScheduledTaskRequest, ListBackgroundTasksRequest, ListInstancesRequest, ListScheduledTasksRequest,
    ModifyInstanceConfig, ModifyInstanceConfigsReq, ModifyInstanceConfigsRequest, PartitionReassignEntity,
    PartitionReassignRequest, ResizeEngineInstanceReq, ResizeEngineInstanceRequest, ShowBackgroundTaskProgressRequest,
    ShowBackgroundTaskRequest, ShowInstanceConfigsRequest, ShowInstanceRequest, UpdateInstanceAutoCreateTopicReq,
    UpdateInstanceAutoCreateTopicRequest, UpdateScheduledTaskRequest, UpgradeInstanceReq, UpgradeInstanceRequest,
    # Instance calls around tasks:
    CreatePostPaidKafkaInstanceRequest, ShowUpgradeInstanceVersionRequest, UpdateInstanceReq, UpdateInstanceRequest,
    # What the Terraform provider reads back:
    ListAvailableZonesRequest, ShowKafkaClusterRequest, ShowKafkaTagsRequest,
)


def wait(check, timeout=20):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, "condition never held"
        time.sleep(0.02)


def task_status(client, iid, tid):
    try:
        res = client.show_background_task(ShowBackgroundTaskRequest(instance_id=iid, task_id=tid))
    except ClientRequestException:
        return None
    return res.tasks[0].status


def finish(client, iid, tid, status="SUCCESS"):
    wait(lambda: task_status(client, iid, tid) == status)
    wait(lambda: client.show_instance(ShowInstanceRequest(instance_id=iid)).status in ("RUNNING", "CREATEFAILED"))


@pytest.fixture(scope="module")
def instance(client):
    body = CreateInstanceByEngineReq(
        name="sdk-kafka", engine="kafka", engine_version="2.7", broker_num=3, storage_space=300,
        product_id="c6.2u4g.cluster", vpc_id="vpc-1", security_group_id="sg-1", subnet_id="subnet-1",
        available_zones=["az1"], storage_spec_code="dms.physical.storage.high.v2",
    )
    res = client.create_instance_by_engine(CreateInstanceByEngineRequest(engine="kafka", body=body))
    iid = res.instance_id
    wait(lambda: client.show_instance(ShowInstanceRequest(instance_id=iid)).status == "RUNNING")
    return iid


@pytest.mark.every_signing_mode
def test_create_show_and_list_instances(client, instance):
    shown = client.show_instance(ShowInstanceRequest(instance_id=instance))
    assert shown.instance_id == instance
    assert shown.broker_num == 3 and shown.storage_space == 300
    listed = client.list_instances(ListInstancesRequest(engine="kafka"))
    assert instance in [i.instance_id for i in listed.instances]


def test_zones_listeners_tags_and_brokers_decode(client, instance):
    """ListAvailableZones, ShowInstance's `charging_mode`/`cross_vpc_info`, ShowKafkaTags and
    ShowKafkaCluster, decoded by the SDK's own models."""
    zones = client.list_available_zones(ListAvailableZonesRequest())
    assert "az1" in [z.id for z in zones.available_zones] and zones.region_id
    assert all(isinstance(z.port, str) and isinstance(z.sold_out, bool) for z in zones.available_zones)
    shown = client.show_instance(ShowInstanceRequest(instance_id=instance))
    assert shown.charging_mode == 1 and shown.port == 9092
    listeners = json.loads(shown.cross_vpc_info)
    assert sorted(listeners) == sorted(shown.connect_address.split(","))
    assert client.show_kafka_tags(ShowKafkaTagsRequest(instance_id=instance)).tags == []
    brokers = client.show_kafka_cluster(ShowKafkaClusterRequest(instance_id=instance)).cluster.brokers
    assert sorted((b.broker_id, b.host) for b in brokers) == sorted(
        (v["broker_id"], ip) for ip, v in listeners.items())
    assert all(b.health and b.port == 9092 for b in brokers)


@pytest.mark.every_signing_mode
def test_modify_configs_then_delete_the_task(client, instance):
    req = ModifyInstanceConfigsReq(kafka_configs=[ModifyInstanceConfig(name="log.retention.hours", value="24")])
    res = client.modify_instance_configs(ModifyInstanceConfigsRequest(instance_id=instance, body=req))
    assert res.dynamic_config == 1 and res.static_config == 0
    finish(client, instance, res.job_id)
    configs = client.show_instance_configs(ShowInstanceConfigsRequest(instance_id=instance)).kafka_configs
    assert {c.name: c.value for c in configs}["log.retention.hours"] == "24"

    shown = client.show_background_task(ShowBackgroundTaskRequest(instance_id=instance, task_id=res.job_id))
    assert shown.task_count == "1"
    assert shown.tasks[0].name == "kafkaConfigModify" and shown.tasks[0].status == "SUCCESS"
    progress = client.show_background_task_progress(
        ShowBackgroundTaskProgressRequest(instance_id=instance, task_id=res.job_id))
    assert progress.progress_percentage == 100
    assert [s.statue for s in progress.step_list] == ["COMPLETED", "COMPLETED"]
    assert all(isinstance(s.start_time, int) for s in progress.step_list)

    deleted = client.delete_background_task(DeleteBackgroundTaskRequest(instance_id=instance, task_id=res.job_id))
    assert deleted.status_code == 204
    with pytest.raises(ClientRequestException) as err:
        client.show_background_task(ShowBackgroundTaskRequest(instance_id=instance, task_id=res.job_id))
    assert err.value.status_code == 404
    assert err.value.error_code == "DMS.00404070"
    assert err.value.request_id and len(err.value.request_id) == 32


@pytest.mark.every_signing_mode
def test_list_background_tasks_pages_and_filters(client, instance):
    for enable in (True, False, True):
        res = client.update_instance_auto_create_topic(UpdateInstanceAutoCreateTopicRequest(
            instance_id=instance, body=UpdateInstanceAutoCreateTopicReq(enable_auto_topic=enable)))
        wait(lambda: client.show_instance(ShowInstanceRequest(instance_id=instance)).enable_auto_topic == enable
             and client.show_instance(ShowInstanceRequest(instance_id=instance)).status == "RUNNING")
    full = client.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance, start=1, limit=100))
    total = int(full.task_count)
    assert total == len(full.tasks) >= 4
    seen, start = [], 1
    while True:
        page = client.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance, start=start, limit=2))
        seen += [t.id for t in page.tasks]
        start += len(page.tasks)
        if int(page.task_count) <= start - 1:
            break
    assert seen == [t.id for t in full.tasks]
    future = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y%m%d%H%M%S")
    empty = client.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance, begin_time=future))
    assert empty.task_count == "0" and empty.tasks == []
    with pytest.raises(ClientRequestException) as err:
        client.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance, begin_time="yesterday"))
    assert err.value.error_code == "DMS.00400142"


def test_resize_storage(server):
    slow = server.client(server.credential("resizer"))
    body = ResizeEngineInstanceReq(oper_type="storage", new_storage_space=100000)
    iid = slow.create_instance_by_engine(CreateInstanceByEngineRequest(engine="kafka", body=CreateInstanceByEngineReq(
        name="sdk-resize", engine_version="2.7", broker_num=3, storage_space=300, product_id="p"))).instance_id
    wait(lambda: slow.show_instance(ShowInstanceRequest(instance_id=iid)).status == "RUNNING")
    job = slow.resize_engine_instance(ResizeEngineInstanceRequest(engine="kafka", instance_id=iid, body=body)).job_id
    finish(slow, iid, job)
    assert slow.show_instance(ShowInstanceRequest(instance_id=iid)).storage_space == 100000


@pytest.mark.every_signing_mode
def test_scheduled_reassignment_update_cancel_and_delete(client, instance):
    # A scheduled reassignment rather than an upgrade: an upgrade needs a newer kernel (see the
    # kernel tests below), while the scheduled-task calls are the same for every task.
    at = int(time.time() * 1000) + 3_600_000
    res = client.create_kafka_reassignment_task(CreateKafkaReassignmentTaskRequest(
        instance_id=instance, body=PartitionReassignRequest(
            reassignments=[PartitionReassignEntity(topic="orders", brokers=[0, 1, 2])],
            is_schedule=True, execute_at=at)))
    # The SDK's CreateKafkaReassignmentTaskResponse has no `schedule_id` field (only job_id and
    # reassignment_time), so the id the server returned is dropped; the scheduled list has it.
    assert not res.job_id
    jobs = client.list_scheduled_tasks(ListScheduledTasksRequest(instance_id=instance, start="1", limit="10"))
    assert jobs.job_count == 1 and jobs.jobs[0].status == "CREATED"
    assert jobs.jobs[0].name == "kafkaPartitionReassign"
    sid = jobs.jobs[0].id
    with pytest.raises(ClientRequestException) as err:
        client.delete_scheduled_task(DeleteScheduledTaskRequest(instance_id=instance, task_id=sid))
    assert err.value.error_code == "DMS.00400017"

    # Two seconds ahead, plus what signing one call takes: the pure-Python ECDSA and SM2 signers
    # derive the key pair on every call, which takes seconds on a loaded machine.
    started = time.monotonic()
    client.show_instance(ShowInstanceRequest(instance_id=instance))
    margin = 2 + 3 * (time.monotonic() - started)
    soon = (datetime.now(timezone.utc) + timedelta(seconds=margin)).strftime("%Y%m%d%H%M%S")
    moved = client.update_scheduled_task(UpdateScheduledTaskRequest(instance_id=instance, task_id=sid, execute_at=soon))
    assert moved.status_code == 204
    finish(client, instance, sid)

    later = int(time.time() * 1000) + 3_600_000
    res = client.create_kafka_reassignment_task(CreateKafkaReassignmentTaskRequest(
        instance_id=instance, body=PartitionReassignRequest(
            reassignments=[PartitionReassignEntity(topic="orders", brokers=[0, 1, 2], replication_factor=3)],
            is_schedule=True, execute_at=later)))
    jobs = client.list_scheduled_tasks(ListScheduledTasksRequest(instance_id=instance))
    pending = [j for j in jobs.jobs if j.status == "CREATED"]
    assert len(pending) == 1 and pending[0].name == "kafkaPartitionReassign"
    cancelled = client.update_scheduled_task(UpdateScheduledTaskRequest(instance_id=instance, task_id=pending[0].id,
                                                                        status="CANCELLED"))
    assert cancelled.status_code == 204
    gone = client.delete_scheduled_task(DeleteScheduledTaskRequest(instance_id=instance, task_id=pending[0].id))
    assert gone.status_code == 204
    deleted = client.delete_scheduled_task(DeleteScheduledTaskRequest(instance_id=instance, task_id=sid))
    assert deleted.status_code == 204
    assert client.list_scheduled_tasks(ListScheduledTasksRequest(instance_id=instance)).job_count == 0


def test_immediate_reassignment_and_restart(client, instance):
    res = client.create_kafka_reassignment_task(CreateKafkaReassignmentTaskRequest(
        instance_id=instance, body=PartitionReassignRequest(
            reassignments=[PartitionReassignEntity(topic="orders", brokers=[0, 1])], throttle=-1)))
    finish(client, instance, res.job_id)
    with pytest.raises(ClientRequestException) as err:
        client.create_kafka_reassignment_task(CreateKafkaReassignmentTaskRequest(
            instance_id=instance, body=PartitionReassignRequest(
                reassignments=[PartitionReassignEntity(topic="orders", brokers=[0, 9])])))
    assert err.value.status_code == 400 and err.value.error_code == "DMS.00400062"
    out = client.batch_restart_or_delete_instances(BatchRestartOrDeleteInstancesRequest(
        body=BatchRestartOrDeleteInstanceReq(instances=[instance], action="restart")))
    assert [(r.instance, r.result) for r in out.results] == [(instance, "success")]
    wait(lambda: client.show_instance(ShowInstanceRequest(instance_id=instance)).status == "RUNNING")


def test_errors_reach_the_sdk_in_dms_format(client, instance):
    with pytest.raises(ClientRequestException) as err:
        client.delete_background_task(DeleteBackgroundTaskRequest(instance_id=instance, task_id="nope"))
    assert err.value.status_code == 400 and err.value.error_code == "DMS.00400070"
    with pytest.raises(ClientRequestException) as err:
        client.show_background_task(ShowBackgroundTaskRequest(
            instance_id="11111111-2222-3333-4444-555555555555", task_id="0" * 32))
    assert err.value.status_code == 404 and err.value.error_code == "DMS.00404022"


def test_sm3_signatures_work_too(server, instance):
    from huaweicloudsdkcore.signer.algorithm import SigningAlgorithm
    sm3 = server.client(server.credential("sm3-user", role="readonly"), algorithm=SigningAlgorithm.HMAC_SM3)
    res = sm3.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance))
    assert int(res.task_count) >= 1


def test_wrong_secret_and_weak_role_are_refused(server, instance, client):
    cred = server.credential("reader", role="readonly")
    reader = server.client(cred)
    tasks = reader.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance, limit=1))
    task_id = tasks.tasks[0].id
    with pytest.raises(ClientRequestException) as err:
        reader.delete_background_task(DeleteBackgroundTaskRequest(instance_id=instance, task_id=task_id))
    assert err.value.status_code == 403 and err.value.error_code == "DMS.00403003"
    assert client.show_background_task(ShowBackgroundTaskRequest(instance_id=instance, task_id=task_id)).tasks

    forged = server.client(dict(cred, secret_key="x" * 40))
    with pytest.raises(ClientRequestException) as err:
        forged.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance))
    assert err.value.status_code == 401 and err.value.error_code == "APIGW.0301"

    other = server.client(server.credential("intruder", project="fedcba9876543210fedcba9876543210"))
    with pytest.raises(ClientRequestException) as err:
        other.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance))
    # The SDK sends the key's project in the path: the instance is simply not there.
    assert err.value.status_code == 404 and err.value.error_code == "DMS.00404022"


# The instance calls around tasks: creation by engine and post-paid, kernel versions and upgrades.


def engine_body(name):
    return CreateInstanceByEngineReq(
        name=name, engine="kafka", engine_version="2.7", broker_num=3, storage_space=300,
        product_id="c6.2u4g.cluster", vpc_id="vpc-1", security_group_id="sg-1", subnet_id="subnet-1",
        available_zones=["az1"], storage_spec_code="dms.physical.storage.high.v2",
    )


def running_instance(client, name):
    res = client.create_instance_by_engine(CreateInstanceByEngineRequest(engine="kafka", body=engine_body(name)))
    iid = res.instance_id
    wait(lambda: client.show_instance(ShowInstanceRequest(instance_id=iid)).status == "RUNNING")
    return iid


def versions(client, iid):
    v = client.show_upgrade_instance_version(ShowUpgradeInstanceVersionRequest(instance_id=iid))
    assert v.status_code == 200
    assert isinstance(v.current_version, str) and v.current_version
    assert isinstance(v.latest_version, str) and v.latest_version
    return v


def test_create_post_paid_kafka_instance(client):
    res = client.create_post_paid_kafka_instance(CreatePostPaidKafkaInstanceRequest(body=engine_body("sdk-postpaid")))
    iid = res.instance_id
    assert iid and len(iid) == 36
    wait(lambda: client.show_instance(ShowInstanceRequest(instance_id=iid)).status == "RUNNING")
    listed = client.list_instances(ListInstancesRequest())
    assert [(i.name, i.engine_version) for i in listed.instances if i.instance_id == iid] == [("sdk-postpaid", "2.7")]
    tasks = client.list_background_tasks(ListBackgroundTasksRequest(instance_id=iid))
    assert [(t.name, t.status) for t in tasks.tasks] == [("createInstance", "SUCCESS")]


def test_show_upgrade_instance_version_and_no_upgrade_on_the_latest_kernel(client):
    iid = running_instance(client, "sdk-kernel-latest")
    v = versions(client, iid)
    assert v.current_version == v.latest_version
    with pytest.raises(ClientRequestException) as err:
        client.upgrade_instance(UpgradeInstanceRequest(instance_id=iid, body=UpgradeInstanceReq(is_schedule=False)))
    assert err.value.status_code == 400 and err.value.error_code.startswith("DMS.")
    assert client.show_instance(ShowInstanceRequest(instance_id=iid)).engine_version == "2.7"


def test_kernel_upgrade_is_rolling_and_keeps_the_kafka_version(server, client):
    iid = running_instance(client, "sdk-kernel-upgrade")
    before = versions(client, iid)
    server.add_kernel("2.7", "2.7.1-h0.cbu.dms.301.r0")
    ahead = versions(client, iid)
    assert ahead.current_version == before.current_version
    assert ahead.latest_version != ahead.current_version and ahead.latest_version == "2.7.1-h0.cbu.dms.301.r0"

    job = client.upgrade_instance(
        UpgradeInstanceRequest(instance_id=iid, body=UpgradeInstanceReq(is_schedule=False))).job_id
    assert job
    finish(client, iid, job)
    shown = client.show_background_task(ShowBackgroundTaskRequest(instance_id=iid, task_id=job))
    assert shown.tasks[0].name == "upgradeInstance"
    progress = client.show_background_task_progress(ShowBackgroundTaskProgressRequest(instance_id=iid, task_id=job))
    # Rolling: one step per broker (other steps, such as checks, may come before and after).
    broker_steps = [st.name for st in progress.step_list if "broker" in st.name.lower()]
    assert len(broker_steps) == len(set(broker_steps)) == 3, [st.name for st in progress.step_list]
    assert all(st.statue == "COMPLETED" for st in progress.step_list)
    assert progress.progress_percentage == 100
    after = versions(client, iid)
    assert after.current_version == after.latest_version == ahead.latest_version
    assert client.show_instance(ShowInstanceRequest(instance_id=iid)).engine_version == "2.7"


def test_scheduled_kernel_upgrade_and_status_null(server, client):
    iid = running_instance(client, "sdk-kernel-scheduled")
    server.add_kernel("2.7", "2.7.1-h0.cbu.dms.302.r0")
    ahead = versions(client, iid)
    at = int(time.time() * 1000) + 3_600_000
    sid = client.upgrade_instance(UpgradeInstanceRequest(
        instance_id=iid, body=UpgradeInstanceReq(is_schedule=True, execute_at=at))).schedule_id
    assert sid
    client.update_scheduled_task(UpdateScheduledTaskRequest(instance_id=iid, task_id=sid, status="CANCELLED"))
    # DMS lists `null` ("to be executed") among the statuses: it puts a cancelled task, still ahead, back.
    back = client.update_scheduled_task(UpdateScheduledTaskRequest(instance_id=iid, task_id=sid, status="null"))
    assert back.status_code == 204
    jobs = client.list_scheduled_tasks(ListScheduledTasksRequest(instance_id=iid)).jobs
    assert [(j.name, j.status) for j in jobs if j.id == sid] == [("upgradeInstance", "CREATED")]
    # Two seconds ahead, plus what signing one call takes: the pure-Python ECDSA and SM2 signers
    # derive the key pair on every call, which takes seconds on a loaded machine.
    started = time.monotonic()
    client.show_instance(ShowInstanceRequest(instance_id=iid))
    margin = 2 + 3 * (time.monotonic() - started)
    soon = (datetime.now(timezone.utc) + timedelta(seconds=margin)).strftime("%Y%m%d%H%M%S")
    client.update_scheduled_task(UpdateScheduledTaskRequest(instance_id=iid, task_id=sid, execute_at=soon))
    finish(client, iid, sid)
    assert versions(client, iid).current_version == ahead.latest_version
    assert client.show_instance(ShowInstanceRequest(instance_id=iid)).engine_version == "2.7"


def test_update_instance(client):
    iid = running_instance(client, "sdk-update")
    res = client.update_instance(UpdateInstanceRequest(instance_id=iid, body=UpdateInstanceReq(
        name="sdk-renamed", description="orders cluster", maintain_begin="02:00:00", maintain_end="06:00:00",
        security_group_id="sg-2", retention_policy="produce_reject")))
    assert res.status_code == 204
    shown = client.show_instance(ShowInstanceRequest(instance_id=iid))
    assert (shown.name, shown.description, shown.maintain_begin, shown.maintain_end, shown.security_group_id,
            shown.retention_policy) == (
        "sdk-renamed", "orders cluster", "02:00:00", "06:00:00", "sg-2", "produce_reject")
    listed = client.list_instances(ListInstancesRequest())
    assert [i.name for i in listed.instances if i.instance_id == iid] == ["sdk-renamed"]
    with pytest.raises(ClientRequestException) as err:
        client.update_instance(UpdateInstanceRequest(
            instance_id=iid, body=UpdateInstanceReq(retention_policy="keep_forever")))
    assert err.value.status_code == 400 and err.value.error_code.startswith("DMS.00400")
    assert client.show_instance(ShowInstanceRequest(instance_id=iid)).retention_policy == "produce_reject"
