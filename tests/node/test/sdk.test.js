'use strict';
// The official Node.js SDK (@huaweicloud/huaweicloud-sdk-kafka 3.1.215, core 3.1.211) against the
// real binary, end to end. It signs differently from the Python SDK (no user-agent among the
// signed headers, query sent unsorted), so it is a second, independent client.
//
// The "instance calls" block covers what surrounds the tasks: kernel versions,
// CreatePostPaidKafkaInstance, UpdateInstance, status=null, params without null fields.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Server, wait, refused, kafka, OTHER_PROJECT, SIGNING_MODES } = require('../helpers');

const PRODUCT = 'c6.2u4g.cluster';

/** yyyyMMddHHmmss in UTC, the format of execute_at in UpdateScheduledTask and of begin/end_time. */
function stamp(ms) {
  return new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

function showTask(client, iid, tid) {
  return client.showBackgroundTask(new kafka.ShowBackgroundTaskRequest().withInstanceId(iid).withTaskId(tid));
}

async function taskStatus(client, iid, tid) {
  try {
    const res = await showTask(client, iid, tid);
    return res.tasks[0].status;
  } catch {
    return null;
  }
}

async function instanceOf(client, iid) {
  return client.showInstance(new kafka.ShowInstanceRequest().withInstanceId(iid));
}

/** Waits for the task to reach `status` and the instance to be RUNNING again. */
async function finish(client, iid, tid, status = 'SUCCESS') {
  await wait(async () => (await taskStatus(client, iid, tid)) === status);
  await wait(async () => (await instanceOf(client, iid)).status === 'RUNNING');
}

function createBody(name) {
  return new kafka.CreateInstanceByEngineReq().withName(name).withEngine('kafka').withEngineVersion('2.7')
    .withBrokerNum(3).withStorageSpace(300).withProductId(PRODUCT).withVpcId('vpc-1').withSecurityGroupId('sg-1')
    .withSubnetId('subnet-1').withAvailableZones(['az1']).withStorageSpecCode('dms.physical.storage.high.v2');
}

async function createInstance(client, name) {
  const res = await client.createInstanceByEngine(
    new kafka.CreateInstanceByEngineRequest().withEngine('kafka').withBody(createBody(name)));
  assert.equal(res.httpStatusCode, 200);
  await wait(async () => (await instanceOf(client, res.instance_id)).status === 'RUNNING');
  return res.instance_id;
}

function reassign(topic, brokers) {
  return new kafka.PartitionReassignEntity().withTopic(topic).withBrokers(brokers);
}

async function listAll(client, iid) {
  return client.listBackgroundTasks(
    new kafka.ListBackgroundTasksRequest().withInstanceId(iid).withStart(1).withLimit(100));
}

/**
 * Adds a newer kernel build for an engine version, so that latest_version moves ahead of the
 * instances: the binary's admin command `kernels add`, on the server's database.
 */
function addKernel(server, engineVersion, build) {
  server.adminCommand('kernels', 'add', '--engine-version', engineVersion, '--build', build);
}

// Every test that calls through a server's client runs once per signing mode of the SDK.
for (const signing of SIGNING_MODES) {
  describe(`official Node.js SDK, end to end, signing ${signing}`, () => {
    let server;
    let client;
    let iid;

    before(async () => {
      server = await Server.start('--time-scale', '0');
      server.signing = signing;
      client = server.client();
      iid = await createInstance(client, 'node-kafka');
    });
    after(() => server && server.stop());

    it('creates, shows and lists an instance', async () => {
      const shown = await instanceOf(client, iid);
      assert.equal(shown.instance_id, iid);
      assert.equal(shown.engine_version, '2.7');
      assert.equal(shown.broker_num, 3);
      assert.equal(shown.storage_space, 300);
      const listed = await client.listInstances(new kafka.ListInstancesRequest().withEngine('kafka'));
      assert.ok(listed.instances.some((i) => i.instance_id === iid));
      const tasks = await listAll(client, iid);
      assert.deepEqual(tasks.tasks.map((t) => [t.name, t.status]), [['createInstance', 'SUCCESS']]);
    });

    it('changes a config, follows its task and deletes it', async () => {
      const body = new kafka.ModifyInstanceConfigsReq().withKafkaConfigs(
        [new kafka.ModifyInstanceConfig().withName('log.retention.hours').withValue('36')]);
      const res = await client.modifyInstanceConfigs(
        new kafka.ModifyInstanceConfigsRequest().withInstanceId(iid).withBody(body));
      assert.ok(/^[0-9a-f]{32}$/.test(res.job_id), res.job_id);
      assert.equal(res.dynamic_config, 1);
      assert.equal(res.static_config, 0);
      await finish(client, iid, res.job_id);

      const configs = await client.showInstanceConfigs(new kafka.ShowInstanceConfigsRequest().withInstanceId(iid));
      assert.equal(configs.kafka_configs.find((c) => c.name === 'log.retention.hours').value, '36');

      const shown = await client.showBackgroundTask(
        new kafka.ShowBackgroundTaskRequest().withInstanceId(iid).withTaskId(res.job_id));
      assert.equal(shown.task_count, '1');
      assert.equal(shown.tasks[0].id, res.job_id);
      assert.equal(shown.tasks[0].name, 'kafkaConfigModify');
      assert.equal(shown.tasks[0].status, 'SUCCESS');
      assert.deepEqual(JSON.parse(shown.tasks[0].params).kafka_configs,
        [{ name: 'log.retention.hours', old_value: '72', new_value: '36' }]);

      const progress = await client.showBackgroundTaskProgress(
        new kafka.ShowBackgroundTaskProgressRequest().withInstanceId(iid).withTaskId(res.job_id));
      assert.equal(progress.progress_percentage, 100);
      assert.ok(progress.step_list.length >= 1);
      assert.ok(progress.step_list.every((s) => s.statue === 'COMPLETED' && Number.isInteger(s.start_time)));

      const deleted = await client.deleteBackgroundTask(
        new kafka.DeleteBackgroundTaskRequest().withInstanceId(iid).withTaskId(res.job_id));
      assert.equal(deleted.httpStatusCode, 204);
      const err = await refused(client.showBackgroundTask(
        new kafka.ShowBackgroundTaskRequest().withInstanceId(iid).withTaskId(res.job_id)));
      assert.equal(err.httpStatusCode, 404);
      assert.equal(err.errorCode, 'DMS.00404070');
      assert.match(err.requestId, /^[0-9a-f]{32}$/);
    });

    it('restarts the instance', async () => {
      const out = await client.batchRestartOrDeleteInstances(new kafka.BatchRestartOrDeleteInstancesRequest().withBody(
        new kafka.BatchRestartOrDeleteInstanceReq().withInstances([iid]).withAction('restart')));
      assert.deepEqual(out.results.map((r) => [r.instance, r.result]), [[iid, 'success']]);
      const tasks = await listAll(client, iid);
      const restart = tasks.tasks.find((t) => t.name === 'restartInstance');
      assert.ok(restart, JSON.stringify(tasks.tasks));
      await finish(client, iid, restart.id);
    });

    it('reassigns partitions now, estimates the time, and refuses an unknown broker', async () => {
      const now = await client.createKafkaReassignmentTask(new kafka.CreateKafkaReassignmentTaskRequest()
        .withInstanceId(iid).withBody(new kafka.PartitionReassignRequest()
          .withReassignments([reassign('orders', [0, 1, 2]).withReplicationFactor(3)]).withThrottle(-1)));
      assert.ok(now.job_id);
      assert.equal(now.schedule_id, undefined);
      await finish(client, iid, now.job_id);
      const shown = await client.showBackgroundTask(
        new kafka.ShowBackgroundTaskRequest().withInstanceId(iid).withTaskId(now.job_id));
      assert.equal(shown.tasks[0].name, 'kafkaPartitionReassign');

      const before = (await listAll(client, iid)).task_count;
      const estimate = await client.createKafkaReassignmentTask(new kafka.CreateKafkaReassignmentTaskRequest()
        .withInstanceId(iid).withBody(new kafka.PartitionReassignRequest()
          .withReassignments([reassign('orders', [0, 1])]).withTimeEstimate(true)));
      assert.ok(Number.isInteger(estimate.reassignment_time) && estimate.reassignment_time >= 0);
      assert.equal(estimate.job_id, undefined);
      assert.equal((await listAll(client, iid)).task_count, before, 'an estimate creates no task');

      const err = await refused(client.createKafkaReassignmentTask(new kafka.CreateKafkaReassignmentTaskRequest()
        .withInstanceId(iid)
        .withBody(new kafka.PartitionReassignRequest().withReassignments([reassign('orders', [0, 9])]))));
      assert.equal(err.httpStatusCode, 400);
      assert.equal(err.errorCode, 'DMS.00400062');
    });

    it('schedules a reassignment, lists, moves, cancels and deletes it', async () => {
      const at = Date.now() + 3_600_000;
      const res = await client.createKafkaReassignmentTask(new kafka.CreateKafkaReassignmentTaskRequest()
        .withInstanceId(iid).withBody(new kafka.PartitionReassignRequest()
          .withReassignments([reassign('orders', [0, 1, 2])]).withIsSchedule(true).withExecuteAt(at)));
      const sid = res.schedule_id;
      assert.ok(/^[0-9a-f]{32}$/.test(sid), sid);
      assert.equal(res.job_id, undefined);

      let jobs = await client.listScheduledTasks(
        new kafka.ListScheduledTasksRequest().withInstanceId(iid).withStart('1').withLimit('10'));
      assert.equal(jobs.job_count, 1);
      assert.deepEqual([jobs.jobs[0].id, jobs.jobs[0].name, jobs.jobs[0].status],
        [sid, 'kafkaPartitionReassign', 'CREATED']);

      const busy = await refused(client.deleteScheduledTask(
        new kafka.DeleteScheduledTaskRequest().withInstanceId(iid).withTaskId(sid)));
      assert.equal(busy.httpStatusCode, 400);
      assert.equal(busy.errorCode, 'DMS.00400017');

      const later = stamp(Date.now() + 7_200_000);
      const moved = await client.updateScheduledTask(
        new kafka.UpdateScheduledTaskRequest().withInstanceId(iid).withTaskId(sid).withExecuteAt(later));
      assert.equal(moved.httpStatusCode, 204);

      const cancelled = await client.updateScheduledTask(
        new kafka.UpdateScheduledTaskRequest().withInstanceId(iid).withTaskId(sid).withStatus('CANCELLED'));
      assert.equal(cancelled.httpStatusCode, 204);
      jobs = await client.listScheduledTasks(new kafka.ListScheduledTasksRequest().withInstanceId(iid));
      assert.equal(jobs.jobs.find((j) => j.id === sid).status, 'CANCELLED');

      const gone = await client.deleteScheduledTask(
        new kafka.DeleteScheduledTaskRequest().withInstanceId(iid).withTaskId(sid));
      assert.equal(gone.httpStatusCode, 204);
      jobs = await client.listScheduledTasks(new kafka.ListScheduledTasksRequest().withInstanceId(iid));
      assert.equal(jobs.job_count, 0);
    });

    it('runs a scheduled reassignment when its time comes', async () => {
      const res = await client.createKafkaReassignmentTask(new kafka.CreateKafkaReassignmentTaskRequest()
        .withInstanceId(iid).withBody(new kafka.PartitionReassignRequest()
          .withReassignments([reassign('orders', [1, 2])]).withIsSchedule(true).withExecuteAt(Date.now() + 3_600_000)));
      const soon = stamp(Date.now() + 2000);
      await client.updateScheduledTask(
        new kafka.UpdateScheduledTaskRequest().withInstanceId(iid).withTaskId(res.schedule_id).withExecuteAt(soon));
      await finish(client, iid, res.schedule_id);
    });

    it('pages the task list with start and limit, and filters by time', async () => {
      const full = await listAll(client, iid);
      const total = Number(full.task_count);
      assert.equal(total, full.tasks.length);
      assert.ok(total >= 4, `only ${total} tasks`);
      const seen = [];
      let start = 1;
      for (let i = 0; i < 50; i += 1) {
        const page = await client.listBackgroundTasks(
          new kafka.ListBackgroundTasksRequest().withInstanceId(iid).withStart(start).withLimit(2));
        assert.ok(page.tasks.length <= 2);
        seen.push(...page.tasks.map((t) => t.id));
        start += page.tasks.length;
        if (Number(page.task_count) <= start - 1) break;
      }
      assert.deepEqual(seen, full.tasks.map((t) => t.id));
      const window = await client.listBackgroundTasks(new kafka.ListBackgroundTasksRequest().withInstanceId(iid)
        .withBeginTime(stamp(Date.now() - 3_600_000)).withEndTime(stamp(Date.now() + 3_600_000)));
      assert.equal(window.task_count, full.task_count);
      const future = await client.listBackgroundTasks(new kafka.ListBackgroundTasksRequest().withInstanceId(iid)
        .withBeginTime(stamp(Date.now() + 86_400_000)));
      assert.equal(future.task_count, '0');
      assert.deepEqual(future.tasks, []);
    });

    it('answers the error paths in DMS format', async () => {
      let err = await refused(client.showBackgroundTask(
        new kafka.ShowBackgroundTaskRequest().withInstanceId(iid).withTaskId('0'.repeat(32))));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [404, 'DMS.00404070']);

      err = await refused(client.showBackgroundTask(new kafka.ShowBackgroundTaskRequest()
        .withInstanceId('11111111-2222-3333-4444-555555555555').withTaskId('0'.repeat(32))));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [404, 'DMS.00404022']);

      err = await refused(client.deleteBackgroundTask(
        new kafka.DeleteBackgroundTaskRequest().withInstanceId(iid).withTaskId('nope')));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [400, 'DMS.00400070']);

      err = await refused(client.listBackgroundTasks(
        new kafka.ListBackgroundTasksRequest().withInstanceId(iid).withBeginTime('yesterday')));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [400, 'DMS.00400142']);

      err = await refused(client.listBackgroundTasks(
        new kafka.ListBackgroundTasksRequest().withInstanceId(iid).withLimit(0)));
      assert.equal(err.httpStatusCode, 400);
      assert.match(err.errorCode, /^DMS\.00400/);

      // The admin key of this project, sent for another project's path: the gateway refuses it.
      const wrong = server.client(server.admin, OTHER_PROJECT);
      err = await refused(wrong.listBackgroundTasks(new kafka.ListBackgroundTasksRequest().withInstanceId(iid)));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [403, 'APIGW.0302']);

      // A key of another project, on its own project's path: the instance is simply not there.
      const stranger = server.client(server.credential('node-stranger', 'admin', OTHER_PROJECT));
      err = await refused(stranger.listBackgroundTasks(new kafka.ListBackgroundTasksRequest().withInstanceId(iid)));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [404, 'DMS.00404022']);

      // A read-only key may read but not delete.
      const reader = server.client(server.credential('node-reader', 'readonly'));
      const tasks = await reader.listBackgroundTasks(
        new kafka.ListBackgroundTasksRequest().withInstanceId(iid).withLimit(1));
      err = await refused(reader.deleteBackgroundTask(
        new kafka.DeleteBackgroundTaskRequest().withInstanceId(iid).withTaskId(tasks.tasks[0].id)));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [403, 'DMS.00403003']);

      // A wrong secret.
      const forged = server.client({ ...server.admin, secret_key: 'x'.repeat(40) });
      err = await refused(forged.listBackgroundTasks(new kafka.ListBackgroundTasksRequest().withInstanceId(iid)));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [401, 'APIGW.0301']);
    });
  });

  describe(`official Node.js SDK, a task still running, signing ${signing}`, () => {
    let server;
    before(async () => {
      // Realistic durations: createInstance takes minutes, so its task is running when deleted.
      server = await Server.start('--time-scale', '1');
      server.signing = signing;
    });
    after(() => server && server.stop());

    it('refuses to delete a running task, and any operation on a busy instance', async () => {
      const client = server.client();
      const res = await client.createInstanceByEngine(
        new kafka.CreateInstanceByEngineRequest().withEngine('kafka').withBody(createBody('node-slow')));
      const tasks = await listAll(client, res.instance_id);
      const create = tasks.tasks.find((t) => t.name === 'createInstance');
      assert.ok(['CREATED', 'EXECUTING'].includes(create.status), create.status);
      let err = await refused(client.deleteBackgroundTask(
        new kafka.DeleteBackgroundTaskRequest().withInstanceId(res.instance_id).withTaskId(create.id)));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [400, 'DMS.00400017']);
      err = await refused(client.modifyInstanceConfigs(new kafka.ModifyInstanceConfigsRequest()
        .withInstanceId(res.instance_id).withBody(new kafka.ModifyInstanceConfigsReq().withKafkaConfigs(
          [new kafka.ModifyInstanceConfig().withName('log.retention.hours').withValue('24')]))));
      assert.deepEqual([err.httpStatusCode, err.errorCode], [400, 'DMS.00400026']);
    });
  });
}

describe('instance calls around tasks: kernels, post-paid create, UpdateInstance', () => {
  let server;
  let client;

  before(async () => {
    server = await Server.start('--time-scale', '0');
    client = server.client();
  });
  after(() => server && server.stop());

  async function versions(iid) {
    const v = await client.showUpgradeInstanceVersion(
      new kafka.ShowUpgradeInstanceVersionRequest().withInstanceId(iid));
    assert.equal(v.httpStatusCode, 200);
    assert.equal(typeof v.current_version, 'string');
    assert.equal(typeof v.latest_version, 'string');
    assert.ok(v.current_version.length > 0 && v.latest_version.length > 0);
    return v;
  }

  it('CreatePostPaidKafkaInstance: POST /v2/{project_id}/kafka/instances', async () => {
    const res = await client.createPostPaidKafkaInstance(
      new kafka.CreatePostPaidKafkaInstanceRequest().withBody(createBody('node-postpaid')));
    assert.equal(res.httpStatusCode, 200);
    assert.match(res.instance_id, /^[0-9a-f-]{36}$/);
    await wait(async () => (await instanceOf(client, res.instance_id)).status === 'RUNNING');
    const listed = await client.listInstances(new kafka.ListInstancesRequest().withEngine('kafka'));
    assert.ok(listed.instances.some((i) => i.instance_id === res.instance_id && i.name === 'node-postpaid'));
    const tasks = await listAll(client, res.instance_id);
    assert.deepEqual(tasks.tasks.map((t) => [t.name, t.status]), [['createInstance', 'SUCCESS']]);
  });

  it('ShowUpgradeInstanceVersion: a new instance is on the latest kernel; upgrading it is refused', async () => {
    const iid = await createInstance(client, 'node-kernel-latest');
    const v = await versions(iid);
    assert.equal(v.current_version, v.latest_version);
    const err = await refused(client.upgradeInstance(new kafka.UpgradeInstanceRequest().withInstanceId(iid)
      .withBody(new kafka.UpgradeInstanceReq().withIsSchedule(false))));
    assert.equal(err.httpStatusCode, 400);
    assert.match(err.errorCode, /^DMS\.\d{8}$/);
    assert.equal((await instanceOf(client, iid)).engine_version, '2.7');
  });

  it('UpgradeInstance: a rolling kernel upgrade, one step per broker, keeping engine_version', async () => {
    const iid = await createInstance(client, 'node-kernel-upgrade');
    const before = await versions(iid);
    addKernel(server, '2.7', '2.7.1-h0.cbu.dms.201.r0');
    const ahead = await versions(iid);
    assert.equal(ahead.current_version, before.current_version);
    assert.notEqual(ahead.latest_version, ahead.current_version);
    assert.ok(ahead.latest_version.includes('2.7.1-h0.cbu.dms.201.r0'), ahead.latest_version);

    const res = await client.upgradeInstance(new kafka.UpgradeInstanceRequest().withInstanceId(iid)
      .withBody(new kafka.UpgradeInstanceReq().withIsSchedule(false)));
    assert.ok(/^[0-9a-f]{32}$/.test(res.job_id), res.job_id);
    await finish(client, iid, res.job_id);
    const shown = await showTask(client, iid, res.job_id);
    assert.equal(shown.tasks[0].name, 'upgradeInstance');
    const progress = await client.showBackgroundTaskProgress(
      new kafka.ShowBackgroundTaskProgressRequest().withInstanceId(iid).withTaskId(res.job_id));
    // Rolling: one step per broker (other steps, such as checks, may come before and after).
    const brokerSteps = progress.step_list.filter((s) => /broker/i.test(s.name));
    assert.equal(brokerSteps.length, 3, JSON.stringify(progress.step_list));
    assert.equal(new Set(brokerSteps.map((s) => s.name)).size, 3);
    assert.ok(progress.step_list.every((s) => s.statue === 'COMPLETED'));
    assert.equal(progress.progress_percentage, 100);

    const after = await versions(iid);
    assert.equal(after.current_version, ahead.latest_version);
    assert.equal(after.latest_version, ahead.latest_version);
    const inst = await instanceOf(client, iid);
    assert.equal(inst.engine_version, '2.7', 'a kernel upgrade never changes the Kafka version');
  });

  it('UpgradeInstance scheduled; UpdateScheduledTask status=null puts a cancelled task back', async () => {
    const iid = await createInstance(client, 'node-kernel-scheduled');
    addKernel(server, '2.7', '2.7.1-h0.cbu.dms.202.r0');
    const ahead = await versions(iid);
    const res = await client.upgradeInstance(new kafka.UpgradeInstanceRequest().withInstanceId(iid)
      .withBody(new kafka.UpgradeInstanceReq().withIsSchedule(true).withExecuteAt(Date.now() + 3_600_000)));
    const sid = res.schedule_id;
    assert.ok(sid);
    await client.updateScheduledTask(
      new kafka.UpdateScheduledTaskRequest().withInstanceId(iid).withTaskId(sid).withStatus('CANCELLED'));
    const back = await client.updateScheduledTask(
      new kafka.UpdateScheduledTaskRequest().withInstanceId(iid).withTaskId(sid).withStatus('null'));
    assert.equal(back.httpStatusCode, 204);
    const jobs = await client.listScheduledTasks(new kafka.ListScheduledTasksRequest().withInstanceId(iid));
    const job = jobs.jobs.find((j) => j.id === sid);
    assert.deepEqual([job.name, job.status], ['upgradeInstance', 'CREATED']);

    await client.updateScheduledTask(new kafka.UpdateScheduledTaskRequest().withInstanceId(iid).withTaskId(sid)
      .withExecuteAt(stamp(Date.now() + 2000)));
    await finish(client, iid, sid);
    const after = await versions(iid);
    assert.equal(after.current_version, ahead.latest_version);
    assert.equal((await instanceOf(client, iid)).engine_version, '2.7');
  });

  it('UpdateInstance: PUT /v2/{project_id}/instances/{instance_id} → 204, reflected by Show and List', async () => {
    const iid = await createInstance(client, 'node-update');
    const body = new kafka.UpdateInstanceReq().withName('node-renamed').withDescription('orders cluster')
      .withMaintainBegin('02:00:00').withMaintainEnd('06:00:00').withSecurityGroupId('sg-2')
      .withRetentionPolicy('produce_reject');
    const res = await client.updateInstance(new kafka.UpdateInstanceRequest().withInstanceId(iid).withBody(body));
    assert.equal(res.httpStatusCode, 204);
    const shown = await instanceOf(client, iid);
    assert.deepEqual(
      [shown.name, shown.description, shown.maintain_begin, shown.maintain_end, shown.security_group_id,
        shown.retention_policy],
      ['node-renamed', 'orders cluster', '02:00:00', '06:00:00', 'sg-2', 'produce_reject']);
    const listed = await client.listInstances(new kafka.ListInstancesRequest().withEngine('kafka'));
    assert.equal(listed.instances.find((i) => i.instance_id === iid).name, 'node-renamed');

    const err = await refused(client.updateInstance(new kafka.UpdateInstanceRequest().withInstanceId(iid)
      .withBody(new kafka.UpdateInstanceReq().withRetentionPolicy('keep_forever'))));
    assert.equal(err.httpStatusCode, 400);
    assert.match(err.errorCode, /^DMS\.00400/);
    assert.equal((await instanceOf(client, iid)).retention_policy, 'produce_reject');
  });

  it('a reassignment task leaves out the fields it was not given (no "throttle":null)', async () => {
    const iid = await createInstance(client, 'node-params');
    const res = await client.createKafkaReassignmentTask(new kafka.CreateKafkaReassignmentTaskRequest()
      .withInstanceId(iid)
      .withBody(new kafka.PartitionReassignRequest().withReassignments([reassign('orders', [0, 1])])));
    await finish(client, iid, res.job_id);
    const shown = await showTask(client, iid, res.job_id);
    const params = JSON.parse(shown.tasks[0].params);
    assert.ok(!('throttle' in params), shown.tasks[0].params);
    assert.ok(Object.values(params).every((v) => v !== null), shown.tasks[0].params);
  });
});
