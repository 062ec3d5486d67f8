package kafkatasks.sdk;

import static kafkatasks.sdk.Kit.createInstance;
import static kafkatasks.sdk.Kit.epochMillis;
import static kafkatasks.sdk.Kit.finish;
import static kafkatasks.sdk.Kit.reassign;
import static kafkatasks.sdk.Kit.refused;
import static kafkatasks.sdk.Kit.stamp;
import static kafkatasks.sdk.Kit.task;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.huaweicloud.sdk.core.exception.ServiceResponseException;
import com.huaweicloud.sdk.kafka.v2.model.CreateReassignmentTaskRequest;
import com.huaweicloud.sdk.kafka.v2.model.CreateReassignmentTaskResponse;
import com.huaweicloud.sdk.kafka.v2.model.PartitionReassignRequest;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import kafkatasks.sdk.TaskKafkaClient.ListScheduled;
import kafkatasks.sdk.TaskKafkaClient.ScheduledTask;
import kafkatasks.sdk.TaskKafkaClient.ScheduledTasks;
import kafkatasks.sdk.TaskKafkaClient.UpdateScheduled;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.FieldSource;

/**
 * Scheduled tasks through the Java SDK: a reassignment scheduled with the SDK's own
 * CreateReassignmentTask, then listed, moved, cancelled, deleted and run. Each test has an
 * instance of its own, so that the counts it reads are its own.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@ParameterizedClass(name = "signing {0}")
@FieldSource("kafkatasks.sdk.KtServer#SIGNING_MODES")
class ScheduledTasksTest {
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

  /**
   * Schedules a reassignment and returns its id. The SDK's CreateReassignmentTaskResponse has no
   * {@code schedule_id} (only job_id and reassignment_time), so the id the server answered is
   * dropped: the scheduled list has it.
   */
  private String schedule(String iid, Duration in) {
    List<String> before = scheduled(iid).getJobs().stream().map(ScheduledTask::getId).collect(Collectors.toList());
    CreateReassignmentTaskResponse res = client.createReassignmentTask(new CreateReassignmentTaskRequest()
        .withInstanceId(iid).withBody(new PartitionReassignRequest()
            .withReassignments(List.of(reassign("orders", 0, 1, 2))).withIsSchedule(true)
            .withExecuteAt(epochMillis(in))));
    assertNull(res.getJobId(), "a scheduled reassignment has no job yet");
    List<String> added = scheduled(iid).getJobs().stream().map(ScheduledTask::getId)
        .filter(id -> !before.contains(id)).collect(Collectors.toList());
    assertEquals(1, added.size(), added.toString());
    return added.get(0);
  }

  private ScheduledTasks scheduled(String iid) {
    return client.listScheduledTasks(ListScheduled.of(iid));
  }

  private ScheduledTask job(String iid, String sid) {
    return scheduled(iid).getJobs().stream().filter(j -> j.getId().equals(sid)).findFirst().orElseThrow();
  }

  @Test
  void listsMovesCancelsAndDeletesAScheduledReassignment() {
    String iid = createInstance(client, "java-scheduled");
    String sid = schedule(iid, Duration.ofHours(1));
    assertTrue(sid.matches("[0-9a-f]{32}"), sid);

    ScheduledTasks jobs = client.listScheduledTasks(new ListScheduled(iid, "1", "10", null, null));
    assertEquals(1, jobs.getJobCount());
    ScheduledTask job = jobs.getJobs().get(0);
    assertEquals(List.of(sid, "kafkaPartitionReassign", "CREATED"), List.of(job.getId(), job.getName(), job.getStatus()));
    String firstTime = job.getScheduleAt();
    assertTrue(firstTime.matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z"), firstTime);

    ServiceResponseException err = refused(() -> client.deleteScheduledTask(iid, sid));
    assertEquals(List.of(400, "DMS.00400017"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
    err = refused(() -> client.updateScheduledTask(new UpdateScheduled(iid, sid, null, null)));
    assertEquals(List.of(400, "DMS.00400062"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
    err = refused(() -> client.updateScheduledTask(new UpdateScheduled(iid, sid, "tomorrow", null)));
    assertEquals(List.of(400, "DMS.00400142"), List.of(err.getHttpStatusCode(), err.getErrorCode()));

    String later = stamp(Instant.now().plus(Duration.ofHours(2)));
    assertEquals(204, client.updateScheduledTask(new UpdateScheduled(iid, sid, later, null)).getHttpStatusCode());
    assertNotEquals(firstTime, job(iid, sid).getScheduleAt());

    assertEquals(204, client.updateScheduledTask(new UpdateScheduled(iid, sid, null, "CANCELLED")).getHttpStatusCode());
    assertEquals("CANCELLED", job(iid, sid).getStatus());
    err = refused(() -> client.updateScheduledTask(new UpdateScheduled(iid, sid, later, null)));
    assertEquals(List.of(400, "DMS.00400026"), List.of(err.getHttpStatusCode(), err.getErrorCode()));

    assertEquals(204, client.deleteScheduledTask(iid, sid).getHttpStatusCode());
    assertEquals(0, scheduled(iid).getJobCount());
    err = refused(() -> client.deleteScheduledTask(iid, sid));
    assertEquals(List.of(404, "DMS.00404070"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
  }

  @Test
  void runsAScheduledReassignmentWhenItsTimeComes() {
    String iid = createInstance(client, "java-scheduled-run");
    String sid = schedule(iid, Duration.ofHours(1));
    String soon = stamp(Instant.now().plus(Duration.ofSeconds(2)));
    assertEquals(204, client.updateScheduledTask(new UpdateScheduled(iid, sid, soon, null)).getHttpStatusCode());
    // The scheduled task runs as the background task of the same id.
    finish(client, iid, sid);
    assertEquals("kafkaPartitionReassign", task(client, iid, sid).getTasks().get(0).getName());
    assertEquals("SUCCESS", job(iid, sid).getStatus());
    ServiceResponseException err = refused(() -> client.updateScheduledTask(
        new UpdateScheduled(iid, sid, null, "CANCELLED")));
    assertEquals(List.of(400, "DMS.00400026"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
    assertEquals(204, client.deleteScheduledTask(iid, sid).getHttpStatusCode());
    assertEquals(0, scheduled(iid).getJobCount());
  }

  @Test
  void pagesTheScheduledListWithStartAndLimit() {
    String iid = createInstance(client, "java-scheduled-pages");
    for (int hours = 1; hours <= 3; hours++) {
      schedule(iid, Duration.ofHours(hours));
    }
    ScheduledTasks all = scheduled(iid);
    assertEquals(3, all.getJobCount());
    List<String> seen = new ArrayList<>();
    for (String start : List.of("1", "3")) {
      ScheduledTasks page = client.listScheduledTasks(new ListScheduled(iid, start, "2", null, null));
      assertEquals(3, page.getJobCount());
      page.getJobs().forEach(j -> seen.add(j.getId()));
    }
    assertEquals(all.getJobs().stream().map(ScheduledTask::getId).collect(Collectors.toList()), seen);

    Instant now = Instant.now();
    String hourAgo = stamp(now.minus(Duration.ofHours(1)));
    String inAnHour = stamp(now.plus(Duration.ofHours(1)));
    assertEquals(3, client.listScheduledTasks(new ListScheduled(iid, null, null, hourAgo, inAnHour)).getJobCount());
    assertEquals(0, client.listScheduledTasks(new ListScheduled(iid, null, null, inAnHour, null)).getJobCount());
    ServiceResponseException err = refused(() -> client.listScheduledTasks(new ListScheduled(iid, null, "101", null, null)));
    assertEquals(List.of(400, "DMS.00400062"), List.of(err.getHttpStatusCode(), err.getErrorCode()));
  }
}
