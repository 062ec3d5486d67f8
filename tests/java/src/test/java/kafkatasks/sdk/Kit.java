package kafkatasks.sdk;

import static org.junit.jupiter.api.Assertions.assertThrows;

import com.huaweicloud.sdk.core.exception.ServiceResponseException;
import com.huaweicloud.sdk.kafka.v2.KafkaClient;
import com.huaweicloud.sdk.kafka.v2.model.CreateInstanceByEngineReq;
import com.huaweicloud.sdk.kafka.v2.model.CreateInstanceByEngineRequest;
import com.huaweicloud.sdk.kafka.v2.model.ListBackgroundTasksRequest;
import com.huaweicloud.sdk.kafka.v2.model.ListBackgroundTasksResponse;
import com.huaweicloud.sdk.kafka.v2.model.ListInstancesRequest;
import com.huaweicloud.sdk.kafka.v2.model.PartitionReassignEntity;
import com.huaweicloud.sdk.kafka.v2.model.ShowBackgroundTaskRequest;
import com.huaweicloud.sdk.kafka.v2.model.ShowBackgroundTaskResponse;
import com.huaweicloud.sdk.kafka.v2.model.ShowInstanceRequest;
import com.huaweicloud.sdk.kafka.v2.model.ShowInstanceResp;
import com.huaweicloud.sdk.kafka.v2.model.ShowInstanceResponse;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.function.Executable;

/** The steps the Java SDK tests share: creating instances, waiting for tasks, times, refusals. */
final class Kit {
  private Kit() {}

  static final String PRODUCT = "c6.2u4g.cluster";

  private static final DateTimeFormatter STAMP =
      DateTimeFormatter.ofPattern("yyyyMMddHHmmss").withZone(ZoneOffset.UTC);

  /** {@code yyyyMMddHHmmss} in UTC, the format of time filters and of UpdateScheduledTask's execute_at. */
  static String stamp(Instant at) {
    return STAMP.format(at);
  }

  static long epochMillis(Duration fromNow) {
    return Instant.now().plus(fromNow).toEpochMilli();
  }

  /** Polls {@code check} every 20 ms until it holds (20 s at most). */
  static void waitFor(String what, Supplier<Boolean> check) {
    long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
    while (!check.get()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("never happened: " + what);
      }
      try {
        Thread.sleep(20);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError(e);
      }
    }
  }

  /** The error answer of a call that must fail, as the SDK decoded it. */
  static ServiceResponseException refused(Executable call) {
    return assertThrows(ServiceResponseException.class, call);
  }

  static CreateInstanceByEngineReq createBody(String name) {
    return new CreateInstanceByEngineReq().withName(name)
        .withEngine(CreateInstanceByEngineReq.EngineEnum.KAFKA).withEngineVersion("2.7")
        .withBrokerNum(3).withStorageSpace(300).withProductId(PRODUCT)
        .withVpcId("vpc-1").withSecurityGroupId("sg-1").withSubnetId("subnet-1")
        .withAvailableZones(List.of("az1"))
        .withStorageSpecCode(CreateInstanceByEngineReq.StorageSpecCodeEnum.DMS_PHYSICAL_STORAGE_HIGH_V2);
  }

  /** CreateInstanceByEngine, then waits for the instance to run. */
  static String createInstance(KafkaClient client, String name) {
    String iid = client.createInstanceByEngine(new CreateInstanceByEngineRequest()
        .withEngine(CreateInstanceByEngineRequest.EngineEnum.KAFKA).withBody(createBody(name))).getInstanceId();
    waitFor(name + " running", () -> "RUNNING".equals(instance(client, iid).getStatus()));
    return iid;
  }

  /** ListInstances; the Java SDK requires the engine. */
  static List<ShowInstanceResp> instances(KafkaClient client) {
    return client.listInstances(new ListInstancesRequest().withEngine(ListInstancesRequest.EngineEnum.KAFKA))
        .getInstances();
  }

  static ShowInstanceResponse instance(KafkaClient client, String iid) {
    return client.showInstance(new ShowInstanceRequest().withInstanceId(iid));
  }

  static ShowBackgroundTaskResponse task(KafkaClient client, String iid, String tid) {
    return client.showBackgroundTask(new ShowBackgroundTaskRequest().withInstanceId(iid).withTaskId(tid));
  }

  static ListBackgroundTasksResponse allTasks(KafkaClient client, String iid) {
    return client.listBackgroundTasks(
        new ListBackgroundTasksRequest().withInstanceId(iid).withStart(1).withLimit(100));
  }

  /** Waits for the task to reach {@code status} and its instance to run again. */
  static void finish(KafkaClient client, String iid, String tid, String status) {
    waitFor("task " + tid + " " + status, () -> {
      try {
        return status.equals(task(client, iid, tid).getTasks().get(0).getStatus());
      } catch (ServiceResponseException e) {
        return false;
      }
    });
    waitFor(iid + " running again", () -> "RUNNING".equals(instance(client, iid).getStatus()));
  }

  static void finish(KafkaClient client, String iid, String tid) {
    finish(client, iid, tid, "SUCCESS");
  }

  static PartitionReassignEntity reassign(String topic, Integer... brokers) {
    return new PartitionReassignEntity().withTopic(topic).withBrokers(List.of(brokers));
  }
}
