package kafkatasks.sdk;

import static kafkatasks.sdk.Kit.allTasks;
import static kafkatasks.sdk.Kit.createInstance;
import static kafkatasks.sdk.Kit.finish;
import static kafkatasks.sdk.Kit.instance;
import static kafkatasks.sdk.Kit.instances;
import static kafkatasks.sdk.Kit.reassign;
import static kafkatasks.sdk.Kit.refused;
import static kafkatasks.sdk.Kit.stamp;
import static kafkatasks.sdk.Kit.task;
import static kafkatasks.sdk.Kit.waitFor;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.huaweicloud.sdk.core.HttpListener;
import com.huaweicloud.sdk.core.auth.SigningAlgorithm;
import com.huaweicloud.sdk.core.exception.ClientRequestException;
import com.huaweicloud.sdk.core.exception.ServiceResponseException;
import com.huaweicloud.sdk.kafka.v2.model.BatchRestartOrDeleteInstanceReq;
import com.huaweicloud.sdk.kafka.v2.model.BatchRestartOrDeleteInstancesRequest;
import com.huaweicloud.sdk.kafka.v2.model.BatchRestartOrDeleteInstancesResponse;
import com.huaweicloud.sdk.kafka.v2.model.CreateInstanceByEngineReq;
import com.huaweicloud.sdk.kafka.v2.model.CreateInstanceByEngineRequest;
import com.huaweicloud.sdk.kafka.v2.model.CreateReassignmentTaskRequest;
import com.huaweicloud.sdk.kafka.v2.model.CreateReassignmentTaskResponse;
import com.huaweicloud.sdk.kafka.v2.model.DeleteBackgroundTaskRequest;
import com.huaweicloud.sdk.kafka.v2.model.DeleteBackgroundTaskResponse;
import com.huaweicloud.sdk.kafka.v2.model.InstanceConfig;
import com.huaweicloud.sdk.kafka.v2.model.ListBackgroundTasksRequest;
import com.huaweicloud.sdk.kafka.v2.model.ListBackgroundTasksRespTasks;
import com.huaweicloud.sdk.kafka.v2.model.ListBackgroundTasksResponse;
import com.huaweicloud.sdk.kafka.v2.model.ModifyInstanceConfig;
import com.huaweicloud.sdk.kafka.v2.model.ModifyInstanceConfigsReq;
import com.huaweicloud.sdk.kafka.v2.model.ModifyInstanceConfigsRequest;
import com.huaweicloud.sdk.kafka.v2.model.ModifyInstanceConfigsResponse;
import com.huaweicloud.sdk.kafka.v2.model.PartitionReassignRequest;
import com.huaweicloud.sdk.kafka.v2.model.ResizeEngineInstanceReq;
import com.huaweicloud.sdk.kafka.v2.model.ResizeEngineInstanceRequest;
import com.huaweicloud.sdk.kafka.v2.model.ShowBackgroundTaskResponse;
import com.huaweicloud.sdk.kafka.v2.model.ShowInstanceConfigsRequest;
import com.huaweicloud.sdk.kafka.v2.model.ShowInstanceResponse;
import com.huaweicloud.sdk.kafka.v2.model.UpdateInstanceAutoCreateTopicReq;
import com.huaweicloud.sdk.kafka.v2.model.UpdateInstanceAutoCreateTopicRequest;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.FieldSource;

/**
 * The official Java SDK against the binary: the background-task calls and the operations that
 * create tasks, on one server whose tasks finish at once ({@code --time-scale 0}).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@ParameterizedClass(name = "signing {0}")
@FieldSource("kafkatasks.sdk.KtServer#SIGNING_MODES")
class BackgroundTasksTest {
  /** The signing mode of this run of the class (see KtServer.SIGNING_MODES). */
  @Parameter
  String signing;

  private static final String UNKNOWN_INSTANCE = "11111111-2222-3333-4444-555555555555";
  private static final String UNKNOWN_TASK = "0".repeat(32);

  private KtServer server;
  private TaskKafkaClient client;
  private String iid;

  @BeforeParameterizedClassInvocation(injectArguments = false)
  void start() throws Exception {
    server = new KtServer("--time-scale", "0");
    server.signing = signing;
    client = server.client(server.credential("java-admin", "admin"));
    iid = createInstance(client, "java-kafka");
  }

  @AfterParameterizedClassInvocation(injectArguments = false)
  void stop() {
    if (server != null) {
      server.closeExpectingNoErrors();
    }
  }

  @Test
  void createsShowsAndListsAnInstance() {
    ShowInstanceResponse shown = instance(client, iid);
    assertEquals(iid, shown.getInstanceId());
    assertEquals("2.7", shown.getEngineVersion());
    assertEquals(3, shown.getBrokerNum());
    assertEquals(300, shown.getStorageSpace());
    List<String> listed = instances(client).stream().map(i -> i.getInstanceId()).collect(Collectors.toList());
    assertTrue(listed.contains(iid), listed.toString());
    ListBackgroundTasksResponse tasks = allTasks(client, iid);
    assertTrue(tasks.getTasks().stream().anyMatch(
        t -> t.getName().equals("createInstance") && t.getStatus().equals("SUCCESS")), tasks.toString());
  }

  @Test
  void changesAConfigFollowsItsTaskAndDeletesIt() {
    ModifyInstanceConfigsResponse res = client.modifyInstanceConfigs(new ModifyInstanceConfigsRequest()
        .withInstanceId(iid).withBody(new ModifyInstanceConfigsReq().withKafkaConfigs(List.of(
            new ModifyInstanceConfig().withName("log.retention.hours").withValue("24")))));
    String job = res.getJobId();
    assertTrue(job.matches("[0-9a-f]{32}"), job);
    assertEquals(1, res.getDynamicConfig());
    assertEquals(0, res.getStaticConfig());
    finish(client, iid, job);
    Map<String, String> configs = client.showInstanceConfigs(new ShowInstanceConfigsRequest().withInstanceId(iid))
        .getKafkaConfigs().stream().collect(Collectors.toMap(InstanceConfig::getName, InstanceConfig::getValue));
    assertEquals("24", configs.get("log.retention.hours"));

    ShowBackgroundTaskResponse shown = task(client, iid, job);
    assertEquals("1", shown.getTaskCount());
    ListBackgroundTasksRespTasks t = shown.getTasks().get(0);
    assertEquals(List.of(job, "kafkaConfigModify", "SUCCESS"), List.of(t.getId(), t.getName(), t.getStatus()));
    assertTrue(t.getParams().contains("\"log.retention.hours\""), t.getParams());
    assertTrue(t.getCreatedAt().matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z"), t.getCreatedAt());

    TaskKafkaClient.Progress progress = client.showBackgroundTaskProgress(iid, job);
    assertEquals(100, progress.getProgressPercentage());
    assertTrue(progress.getStepList().size() >= 1);
    assertTrue(progress.getStepList().stream().allMatch(
        s -> s.getStatue().equals("COMPLETED") && s.getStartTime() != null && s.getEndTime() != null));

    DeleteBackgroundTaskResponse deleted = client.deleteBackgroundTask(
        new DeleteBackgroundTaskRequest().withInstanceId(iid).withTaskId(job));
    assertEquals(204, deleted.getHttpStatusCode());
    ServiceResponseException gone = refused(() -> task(client, iid, job));
    assertTrue(gone instanceof ClientRequestException, gone.getClass().getName());
    assertEquals(404, gone.getHttpStatusCode());
    assertEquals("DMS.00404070", gone.getErrorCode());
    assertTrue(gone.getRequestId().matches("[0-9a-f]{32}"), gone.getRequestId());
    assertTrue(allTasks(client, iid).getTasks().stream().noneMatch(x -> x.getId().equals(job)));
    ServiceResponseException again = refused(() -> client.deleteBackgroundTask(
        new DeleteBackgroundTaskRequest().withInstanceId(iid).withTaskId(job)));
    assertEquals(List.of(404, "DMS.00404070"), List.of(again.getHttpStatusCode(), again.getErrorCode()));
  }

  @Test
  void pagesTheTaskListWithStartAndLimitAndFiltersByTime() {
    for (boolean enable : new boolean[] {true, false, true}) {
      client.updateInstanceAutoCreateTopic(new UpdateInstanceAutoCreateTopicRequest().withInstanceId(iid)
          .withBody(new UpdateInstanceAutoCreateTopicReq().withEnableAutoTopic(enable)));
      waitFor("auto topic " + enable, () -> {
        ShowInstanceResponse shown = instance(client, iid);
        return shown.getEnableAutoTopic() == enable && shown.getStatus().equals("RUNNING");
      });
    }
    ListBackgroundTasksResponse full = allTasks(client, iid);
    int total = Integer.parseInt(full.getTaskCount());
    assertEquals(total, full.getTasks().size());
    assertTrue(total >= 4, "only " + total + " tasks");

    List<String> seen = new ArrayList<>();
    int start = 1;
    for (int pages = 0; pages < 50; pages++) {
      ListBackgroundTasksResponse page = client.listBackgroundTasks(
          new ListBackgroundTasksRequest().withInstanceId(iid).withStart(start).withLimit(2));
      assertTrue(page.getTasks().size() <= 2);
      page.getTasks().forEach(t -> seen.add(t.getId()));
      start += page.getTasks().size();
      if (Integer.parseInt(page.getTaskCount()) <= start - 1) {
        break;
      }
    }
    assertEquals(full.getTasks().stream().map(ListBackgroundTasksRespTasks::getId).collect(Collectors.toList()), seen);

    ListBackgroundTasksResponse fromZero = client.listBackgroundTasks(
        new ListBackgroundTasksRequest().withInstanceId(iid).withStart(0).withLimit(2));
    assertEquals(seen.subList(0, 2), fromZero.getTasks().stream().map(ListBackgroundTasksRespTasks::getId)
        .collect(Collectors.toList()), "start=0 is the first task, as start=1");
    ListBackgroundTasksResponse past = client.listBackgroundTasks(new ListBackgroundTasksRequest()
        .withInstanceId(iid).withStart(total + 1).withLimit(10));
    assertEquals(List.of(String.valueOf(total), List.of()), List.of(past.getTaskCount(), past.getTasks()));

    Instant now = Instant.now();
    ListBackgroundTasksResponse window = client.listBackgroundTasks(new ListBackgroundTasksRequest()
        .withInstanceId(iid).withBeginTime(stamp(now.minus(Duration.ofHours(1))))
        .withEndTime(stamp(now.plus(Duration.ofHours(1)))).withLimit(100));
    assertEquals(full.getTaskCount(), window.getTaskCount());
    ListBackgroundTasksResponse future = client.listBackgroundTasks(new ListBackgroundTasksRequest()
        .withInstanceId(iid).withBeginTime(stamp(now.plus(Duration.ofDays(1)))));
    assertEquals("0", future.getTaskCount());
    assertEquals(List.of(), future.getTasks());

    ServiceResponseException err = refused(() -> client.listBackgroundTasks(
        new ListBackgroundTasksRequest().withInstanceId(iid).withBeginTime("yesterday")));
    assertEquals(List.of(400, "DMS.00400142"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
    err = refused(() -> client.listBackgroundTasks(new ListBackgroundTasksRequest().withInstanceId(iid).withLimit(0)));
    assertEquals(List.of(400, "DMS.00400062"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
  }

  @Test
  void resizesTheStorage() {
    String resized = client.createInstanceByEngine(new CreateInstanceByEngineRequest()
        .withEngine(CreateInstanceByEngineRequest.EngineEnum.KAFKA)
        .withBody(new CreateInstanceByEngineReq().withName("java-resize").withEngineVersion("2.7")
            .withBrokerNum(3).withStorageSpace(300).withProductId("p"))).getInstanceId();
    waitFor("java-resize running", () -> "RUNNING".equals(instance(client, resized).getStatus()));
    String job = client.resizeEngineInstance(new ResizeEngineInstanceRequest()
        .withEngine(ResizeEngineInstanceRequest.EngineEnum.KAFKA).withInstanceId(resized)
        .withBody(new ResizeEngineInstanceReq().withOperType("storage").withNewStorageSpace(100000))).getJobId();
    finish(client, resized, job);
    assertEquals(100000, instance(client, resized).getStorageSpace());
    assertEquals("SUCCESS", task(client, resized, job).getTasks().get(0).getStatus());
    TaskKafkaClient.Progress progress = client.showBackgroundTaskProgress(resized, job);
    assertEquals(100, progress.getProgressPercentage());
    assertTrue(progress.getStepList().size() >= 2, "a resize has several steps");
  }

  @Test
  void reassignsPartitionsEstimatesTheTimeAndRefusesAnUnknownBroker() {
    // CreateReassignmentTask: the documented POST /v2/kafka/{project_id}/instances/{instance_id}/reassign.
    CreateReassignmentTaskResponse now = client.createReassignmentTask(new CreateReassignmentTaskRequest()
        .withInstanceId(iid).withBody(new PartitionReassignRequest()
            .withReassignments(List.of(reassign("orders", 0, 1, 2).withReplicationFactor(3))).withThrottle(-1)));
    assertNotNull(now.getJobId());
    finish(client, iid, now.getJobId());
    assertEquals("kafkaPartitionReassign", task(client, iid, now.getJobId()).getTasks().get(0).getName());

    String before = allTasks(client, iid).getTaskCount();
    CreateReassignmentTaskResponse estimate = client.createReassignmentTask(new CreateReassignmentTaskRequest()
        .withInstanceId(iid).withBody(new PartitionReassignRequest()
            .withReassignments(List.of(reassign("orders", 0, 1))).withTimeEstimate(true)));
    assertNull(estimate.getJobId());
    assertTrue(estimate.getReassignmentTime() != null && estimate.getReassignmentTime() >= 0);
    assertEquals(before, allTasks(client, iid).getTaskCount(), "an estimate creates no task");

    ServiceResponseException err = refused(() -> client.createReassignmentTask(new CreateReassignmentTaskRequest()
        .withInstanceId(iid).withBody(new PartitionReassignRequest().withReassignments(List.of(reassign("orders", 0, 9))))));
    assertEquals(List.of(400, "DMS.00400062"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
  }

  @Test
  void restartsTheInstance() {
    BatchRestartOrDeleteInstancesResponse out = client.batchRestartOrDeleteInstances(
        new BatchRestartOrDeleteInstancesRequest().withBody(new BatchRestartOrDeleteInstanceReq()
            .withInstances(List.of(iid)).withAction(BatchRestartOrDeleteInstanceReq.ActionEnum.RESTART)));
    assertEquals(List.of(List.of(iid, "success")),
        out.getResults().stream().map(r -> List.of(r.getInstance(), r.getResult())).collect(Collectors.toList()));
    ListBackgroundTasksRespTasks restart = allTasks(client, iid).getTasks().stream()
        .filter(t -> t.getName().equals("restartInstance")).findFirst().orElseThrow();
    finish(client, iid, restart.getId());
  }

  @Test
  void answersErrorsInDmsFormatDecodedByTheSdk() {
    ServiceResponseException err = refused(() -> client.deleteBackgroundTask(
        new DeleteBackgroundTaskRequest().withInstanceId(iid).withTaskId("nope")));
    assertEquals(List.of(400, "DMS.00400070"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
    assertEquals("Invalid task ID format.", err.getErrorMsg());

    err = refused(() -> task(client, iid, UNKNOWN_TASK));
    assertEquals(List.of(404, "DMS.00404070"), List.of(err.getHttpStatusCode(), err.getErrorCode()));

    err = refused(() -> task(client, UNKNOWN_INSTANCE, UNKNOWN_TASK));
    assertEquals(List.of(404, "DMS.00404022"), List.of(err.getHttpStatusCode(), err.getErrorCode()));

    err = refused(() -> task(client, "not-a-uuid", UNKNOWN_TASK));
    assertEquals(List.of(400, "DMS.00400030"), List.of(err.getHttpStatusCode(), err.getErrorCode()));

    err = refused(() -> client.showBackgroundTaskProgress(iid, UNKNOWN_TASK));
    assertEquals(List.of(404, "DMS.00404070"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
  }

  @Test
  void signsWithSm3Too() {
    List<String> algorithms = new ArrayList<>();
    TaskKafkaClient sm3 = server.client(server.credential("java-sm3", "readonly"), KtServer.PROJECT,
        SigningAlgorithm.HMAC_SM3, HttpListener.forRequestListener(
            r -> algorithms.add(r.headers().get("Authorization").get(0).split(" ")[0])));
    ListBackgroundTasksResponse res = sm3.listBackgroundTasks(new ListBackgroundTasksRequest().withInstanceId(iid));
    assertTrue(Integer.parseInt(res.getTaskCount()) >= 1);
    String tid = res.getTasks().get(0).getId();
    assertEquals(tid, task(sm3, iid, tid).getTasks().get(0).getId());
    assertEquals(List.of("SDK-HMAC-SM3", "SDK-HMAC-SM3"), algorithms);
  }

  /**
   * SDK-ECDSA-P256-SHA256 and SDK-SM2-SM3 (BouncyCastle's signers): the server derives the same
   * key pair from the stored secret; another secret's pair is refused.
   */
  @Test
  void signsWithTheSdksAsymmetricAlgorithmsAndRefusesAnotherSecret() {
    for (SigningAlgorithm algorithm : List.of(SigningAlgorithm.ECDSA_P256_SHA256, SigningAlgorithm.SM2_SM3)) {
      List<String> sent = new ArrayList<>();
      TaskKafkaClient asymmetric = server.client(server.admin, KtServer.PROJECT, algorithm,
          HttpListener.forRequestListener(r -> sent.add(r.headers().get("Authorization").get(0).split(" ")[0])));
      ListBackgroundTasksResponse res = asymmetric.listBackgroundTasks(
          new ListBackgroundTasksRequest().withInstanceId(iid));
      assertTrue(Integer.parseInt(res.getTaskCount()) >= 1, algorithm.name());
      String name = algorithm == SigningAlgorithm.SM2_SM3 ? "SDK-SM2-SM3" : "SDK-ECDSA-P256-SHA256";
      assertEquals(List.of(name), sent);
      KtServer.Credential forged = new KtServer.Credential(server.admin.accessKey(), "x".repeat(40),
          server.admin.projectId());
      TaskKafkaClient wrong = server.client(forged, KtServer.PROJECT, algorithm);
      ServiceResponseException err = refused(() -> wrong.listBackgroundTasks(
          new ListBackgroundTasksRequest().withInstanceId(iid)));
      assertEquals(List.of(401, "APIGW.0301"), List.of(err.getHttpStatusCode(), err.getErrorCode()), algorithm.name());
    }
  }

  @Test
  void refusesAWeakRoleAWrongSecretAndAnotherProject() {
    KtServer.Credential readonly = server.credential("java-reader", "readonly");
    TaskKafkaClient reader = server.client(readonly);
    String tid = reader.listBackgroundTasks(new ListBackgroundTasksRequest().withInstanceId(iid).withLimit(1))
        .getTasks().get(0).getId();
    ServiceResponseException err = refused(() -> reader.deleteBackgroundTask(
        new DeleteBackgroundTaskRequest().withInstanceId(iid).withTaskId(tid)));
    assertEquals(List.of(403, "DMS.00403003"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
    assertEquals(tid, task(client, iid, tid).getTasks().get(0).getId(), "the task is still there");

    TaskKafkaClient forged = server.client(readonly.withSecretKey("x".repeat(40)));
    err = refused(() -> forged.listBackgroundTasks(new ListBackgroundTasksRequest().withInstanceId(iid)));
    assertEquals(List.of(401, "APIGW.0301"), List.of(err.getHttpStatusCode(), err.getErrorCode()));

    // This project's admin key sent for another project's path: the gateway refuses it.
    TaskKafkaClient wrong = server.client(server.admin, KtServer.OTHER_PROJECT, null);
    err = refused(() -> wrong.listBackgroundTasks(new ListBackgroundTasksRequest().withInstanceId(iid)));
    assertEquals(List.of(403, "APIGW.0302"), List.of(err.getHttpStatusCode(), err.getErrorCode()));

    // A key of another project on its own project's path: the instance is simply not there.
    TaskKafkaClient stranger = server.client(server.credential("java-stranger", "admin", KtServer.OTHER_PROJECT));
    err = refused(() -> stranger.listBackgroundTasks(new ListBackgroundTasksRequest().withInstanceId(iid)));
    assertEquals(List.of(404, "DMS.00404022"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
  }
}
