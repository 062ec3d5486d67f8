package kafkatasks.sdk;

import static kafkatasks.sdk.Kit.allTasks;
import static kafkatasks.sdk.Kit.createBody;
import static kafkatasks.sdk.Kit.createInstance;
import static kafkatasks.sdk.Kit.epochMillis;
import static kafkatasks.sdk.Kit.finish;
import static kafkatasks.sdk.Kit.instance;
import static kafkatasks.sdk.Kit.instances;
import static kafkatasks.sdk.Kit.refused;
import static kafkatasks.sdk.Kit.stamp;
import static kafkatasks.sdk.Kit.task;
import static kafkatasks.sdk.Kit.waitFor;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.huaweicloud.sdk.core.exception.ServiceResponseException;
import com.huaweicloud.sdk.kafka.v2.model.ShowInstanceResponse;
import com.huaweicloud.sdk.kafka.v2.model.UpdateInstanceReq;
import com.huaweicloud.sdk.kafka.v2.model.UpdateInstanceRequest;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.stream.Collectors;
import kafkatasks.sdk.TaskKafkaClient.ScheduledTask;
import kafkatasks.sdk.TaskKafkaClient.UpdateScheduled;
import kafkatasks.sdk.TaskKafkaClient.UpgradeBody;
import kafkatasks.sdk.TaskKafkaClient.Versions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.FieldSource;

/**
 * Instance calls around tasks: CreatePostPaidKafkaInstance, UpdateInstance, and kernel upgrades
 * (ShowUpgradeInstanceVersion, UpgradeInstance now and scheduled).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@ParameterizedClass(name = "signing {0}")
@FieldSource("kafkatasks.sdk.KtServer#DEFAULT_SIGNING_MODE")
class KernelAndInstanceTest {
  /** The signing mode of this run of the class (see KtServer.SIGNING_MODES). */
  @Parameter
  String signing;

  private KtServer server;
  private TaskKafkaClient client;

  @BeforeParameterizedClassInvocation(injectArguments = false)
  void start() throws Exception {
    server = new KtServer("--time-scale", "0");
    server.signing = signing;
    client = server.client();
  }

  @AfterParameterizedClassInvocation(injectArguments = false)
  void stop() {
    if (server != null) {
      server.closeExpectingNoErrors();
    }
  }

  private Versions versions(String iid) {
    Versions v = client.showUpgradeInstanceVersion(iid);
    assertEquals(200, v.getHttpStatusCode());
    assertTrue(!v.getCurrentVersion().isEmpty() && !v.getLatestVersion().isEmpty());
    return v;
  }

  @Test
  void createsAPostPaidKafkaInstance() {
    String iid = client.createPostPaidKafkaInstance(createBody("java-postpaid")).getInstanceId();
    assertTrue(iid.matches("[0-9a-f-]{36}"), iid);
    waitFor("java-postpaid running", () -> "RUNNING".equals(instance(client, iid).getStatus()));
    List<List<String>> listed = instances(client).stream()
        .filter(i -> i.getInstanceId().equals(iid)).map(i -> List.of(i.getName(), i.getEngineVersion()))
        .collect(Collectors.toList());
    assertEquals(List.of(List.of("java-postpaid", "2.7")), listed);
    assertEquals(List.of(List.of("createInstance", "SUCCESS")), allTasks(client, iid).getTasks().stream()
        .map(t -> List.of(t.getName(), t.getStatus())).collect(Collectors.toList()));
  }

  @Test
  void aNewInstanceIsOnTheLatestKernelAndUpgradingItIsRefused() {
    String iid = createInstance(client, "java-kernel-latest");
    Versions v = versions(iid);
    assertEquals(v.getCurrentVersion(), v.getLatestVersion());
    ServiceResponseException err = refused(() -> client.upgradeInstance(iid, new UpgradeBody(false, null)));
    assertEquals(400, err.getHttpStatusCode());
    assertTrue(err.getErrorCode().matches("DMS\\.\\d{8}"), err.getErrorCode());
    assertEquals("2.7", instance(client, iid).getEngineVersion());
  }

  @Test
  void upgradesTheKernelBrokerByBrokerKeepingTheKafkaVersion() {
    String iid = createInstance(client, "java-kernel-upgrade");
    Versions before = versions(iid);
    server.addKernel("2.7", "2.7.1-h0.cbu.dms.401.r0");
    Versions ahead = versions(iid);
    assertEquals(before.getCurrentVersion(), ahead.getCurrentVersion());
    assertEquals("2.7.1-h0.cbu.dms.401.r0", ahead.getLatestVersion());

    String job = client.upgradeInstance(iid, new UpgradeBody(false, null)).getJobId();
    assertTrue(job.matches("[0-9a-f]{32}"), job);
    finish(client, iid, job);
    assertEquals("upgradeInstance", task(client, iid, job).getTasks().get(0).getName());
    TaskKafkaClient.Progress progress = client.showBackgroundTaskProgress(iid, job);
    // Rolling: one step per broker (other steps, such as checks, may come before and after).
    List<String> brokerSteps = progress.getStepList().stream().map(TaskKafkaClient.Step::getName)
        .filter(n -> n.toLowerCase().contains("broker")).collect(Collectors.toList());
    assertEquals(3, brokerSteps.size(), brokerSteps.toString());
    assertEquals(3, brokerSteps.stream().distinct().count());
    assertTrue(progress.getStepList().stream().allMatch(s -> s.getStatue().equals("COMPLETED")));
    assertEquals(100, progress.getProgressPercentage());

    Versions after = versions(iid);
    assertEquals(List.of(ahead.getLatestVersion(), ahead.getLatestVersion()),
        List.of(after.getCurrentVersion(), after.getLatestVersion()));
    assertEquals("2.7", instance(client, iid).getEngineVersion(), "a kernel upgrade keeps the Kafka version");
  }

  @Test
  void schedulesAnUpgradeAndStatusNullPutsACancelledTaskBack() {
    String iid = createInstance(client, "java-kernel-scheduled");
    server.addKernel("2.7", "2.7.1-h0.cbu.dms.402.r0");
    Versions ahead = versions(iid);
    TaskKafkaClient.UpgradeResult res = client.upgradeInstance(iid,
        new UpgradeBody(true, epochMillis(Duration.ofHours(1))));
    String sid = res.getScheduleId();
    assertTrue(sid.matches("[0-9a-f]{32}"), sid);
    assertEquals(204, client.updateScheduledTask(new UpdateScheduled(iid, sid, null, "CANCELLED")).getHttpStatusCode());
    // DMS lists `null` ("to be executed") among the statuses: it puts a cancelled task, still ahead, back.
    assertEquals(204, client.updateScheduledTask(new UpdateScheduled(iid, sid, null, "null")).getHttpStatusCode());
    List<ScheduledTask> jobs = client.listScheduledTasks(TaskKafkaClient.ListScheduled.of(iid)).getJobs();
    assertEquals(List.of(List.of("upgradeInstance", "CREATED")), jobs.stream().filter(j -> j.getId().equals(sid))
        .map(j -> List.of(j.getName(), j.getStatus())).collect(Collectors.toList()));

    String soon = stamp(Instant.now().plus(Duration.ofSeconds(2)));
    client.updateScheduledTask(new UpdateScheduled(iid, sid, soon, null));
    finish(client, iid, sid);
    assertEquals(ahead.getLatestVersion(), versions(iid).getCurrentVersion());
    assertEquals("2.7", instance(client, iid).getEngineVersion());
  }

  @Test
  void updatesAnInstance() {
    String iid = createInstance(client, "java-update");
    int status = client.updateInstance(new UpdateInstanceRequest().withInstanceId(iid).withBody(new UpdateInstanceReq()
        .withName("java-renamed").withDescription("orders cluster").withMaintainBegin("02:00:00")
        .withMaintainEnd("06:00:00").withSecurityGroupId("sg-2")
        .withRetentionPolicy(UpdateInstanceReq.RetentionPolicyEnum.PRODUCE_REJECT))).getHttpStatusCode();
    assertEquals(204, status);
    ShowInstanceResponse shown = instance(client, iid);
    assertEquals(List.of("java-renamed", "orders cluster", "02:00:00", "06:00:00", "sg-2", "produce_reject"),
        List.of(shown.getName(), shown.getDescription(), shown.getMaintainBegin(), shown.getMaintainEnd(),
            shown.getSecurityGroupId(), shown.getRetentionPolicy().getValue()));
    assertEquals(List.of("java-renamed"), instances(client).stream()
        .filter(i -> i.getInstanceId().equals(iid)).map(i -> i.getName()).collect(Collectors.toList()));

    ServiceResponseException err = refused(() -> client.updateInstance(new UpdateInstanceRequest().withInstanceId(iid)
        .withBody(new UpdateInstanceReq().withRetentionPolicy(UpdateInstanceReq.RetentionPolicyEnum.fromValue("keep_forever")))));
    assertEquals(400, err.getHttpStatusCode());
    assertTrue(err.getErrorCode().startsWith("DMS.00400"), err.getErrorCode());
    assertEquals("produce_reject", instance(client, iid).getRetentionPolicy().getValue());
    assertEquals("java-renamed", instance(client, iid).getName());
  }
}
