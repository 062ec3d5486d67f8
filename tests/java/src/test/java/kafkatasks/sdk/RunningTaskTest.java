package kafkatasks.sdk;

import static kafkatasks.sdk.Kit.allTasks;
import static kafkatasks.sdk.Kit.createBody;
import static kafkatasks.sdk.Kit.refused;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.huaweicloud.sdk.core.exception.ServiceResponseException;
import com.huaweicloud.sdk.kafka.v2.model.CreateInstanceByEngineRequest;
import com.huaweicloud.sdk.kafka.v2.model.DeleteBackgroundTaskRequest;
import com.huaweicloud.sdk.kafka.v2.model.ListBackgroundTasksRespTasks;
import com.huaweicloud.sdk.kafka.v2.model.ModifyInstanceConfig;
import com.huaweicloud.sdk.kafka.v2.model.ModifyInstanceConfigsReq;
import com.huaweicloud.sdk.kafka.v2.model.ModifyInstanceConfigsRequest;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.FieldSource;

/** A task still running, on a server with realistic durations: creating an instance takes minutes. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@ParameterizedClass(name = "signing {0}")
@FieldSource("kafkatasks.sdk.KtServer#DEFAULT_SIGNING_MODE")
class RunningTaskTest {
  /** The signing mode of this run of the class (see KtServer.SIGNING_MODES). */
  @Parameter
  String signing;

  private KtServer server;

  @BeforeParameterizedClassInvocation(injectArguments = false)
  void start() throws Exception {
    server = new KtServer("--time-scale", "1");
    server.signing = signing;
  }

  @AfterParameterizedClassInvocation(injectArguments = false)
  void stop() {
    if (server != null) {
      server.closeExpectingNoErrors();
    }
  }

  @Test
  void refusesToDeleteARunningTaskAndAnyOperationOnTheBusyInstance() {
    TaskKafkaClient client = server.client();
    String iid = client.createInstanceByEngine(new CreateInstanceByEngineRequest()
        .withEngine(CreateInstanceByEngineRequest.EngineEnum.KAFKA).withBody(createBody("java-slow"))).getInstanceId();
    ListBackgroundTasksRespTasks create = allTasks(client, iid).getTasks().stream()
        .filter(t -> t.getName().equals("createInstance")).findFirst().orElseThrow();
    assertTrue(Set.of("CREATED", "EXECUTING").contains(create.getStatus()), create.getStatus());

    TaskKafkaClient.Progress progress = client.showBackgroundTaskProgress(iid, create.getId());
    assertTrue(progress.getProgressPercentage() < 100, "progress " + progress.getProgressPercentage());
    assertTrue(progress.getStepList().stream().anyMatch(s -> !s.getStatue().equals("COMPLETED")));
    assertTrue(progress.getStepList().stream().allMatch(
        s -> Set.of("WAITING", "IN_PROGRESS", "COMPLETED").contains(s.getStatue())));

    ServiceResponseException err = refused(() -> client.deleteBackgroundTask(
        new DeleteBackgroundTaskRequest().withInstanceId(iid).withTaskId(create.getId())));
    assertEquals(List.of(400, "DMS.00400017"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
    err = refused(() -> client.modifyInstanceConfigs(new ModifyInstanceConfigsRequest().withInstanceId(iid)
        .withBody(new ModifyInstanceConfigsReq().withKafkaConfigs(List.of(
            new ModifyInstanceConfig().withName("log.retention.hours").withValue("24"))))));
    assertEquals(List.of(400, "DMS.00400026"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
  }
}
