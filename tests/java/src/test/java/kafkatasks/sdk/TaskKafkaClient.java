package kafkatasks.sdk;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.huaweicloud.sdk.core.HcClient;
import com.huaweicloud.sdk.core.SdkResponse;
import com.huaweicloud.sdk.core.http.FieldExistence;
import com.huaweicloud.sdk.core.http.FieldImpl;
import com.huaweicloud.sdk.core.http.HttpMethod;
import com.huaweicloud.sdk.core.http.HttpRequestDef;
import com.huaweicloud.sdk.core.http.LocationType;
import com.huaweicloud.sdk.kafka.v2.KafkaClient;
import com.huaweicloud.sdk.kafka.v2.model.CreateInstanceByEngineReq;
import java.util.List;
import java.util.function.Function;

/**
 * The official {@link KafkaClient}, plus the task calls that huaweicloud-sdk-kafka 3.1.143 (the
 * newest on Maven Central here) does not have yet: ShowBackgroundTaskProgress, the three
 * scheduled-task calls, ShowUpgradeInstanceVersion, UpgradeInstance and
 * CreatePostPaidKafkaInstance.
 *
 * <p>Each is declared the way the SDK declares its own operations (an {@link HttpRequestDef}
 * with the method, path, query and body fields of the Python SDK 3.1.219 that the other suites
 * use) and sent through the client's own {@link HcClient}: signing, headers, the JSON mapping and
 * the decoding of error answers into {@code ServiceResponseException} are the SDK's, unchanged.
 */
public class TaskKafkaClient extends KafkaClient {
  TaskKafkaClient(HcClient hcClient) {
    super(hcClient);
  }

  /** A task of an instance: the path parameters of the progress and scheduled-task calls. */
  record TaskRef(String instanceId, String taskId) {}

  /** An instance: the path parameter of the kernel calls. */
  record InstanceRef(String instanceId) {}

  /** ListScheduledTasks: the SDK sends start and limit as strings. */
  record ListScheduled(String instanceId, String start, String limit, String beginTime, String endTime) {
    static ListScheduled of(String instanceId) {
      return new ListScheduled(instanceId, null, null, null, null);
    }
  }

  /** UpdateScheduledTask: both inputs are query parameters; either may be left out. */
  record UpdateScheduled(String instanceId, String taskId, String executeAt, String status) {}

  /** UpgradeInstance: the body's {@code is_schedule} and {@code execute_at} (epoch ms). */
  record Upgrade(String instanceId, UpgradeBody body) {}

  @JsonInclude(JsonInclude.Include.NON_NULL)
  record UpgradeBody(@JsonProperty("is_schedule") Boolean isSchedule, @JsonProperty("execute_at") Long executeAt) {}

  record CreatePostPaid(CreateInstanceByEngineReq body) {}

  /** The answer of ShowBackgroundTaskProgress. */
  public static class Progress extends SdkResponse {
    @JsonProperty("progress_percentage")
    private Integer progressPercentage;

    @JsonProperty("remain_time")
    private Long remainTime;

    @JsonProperty("step_list")
    private List<Step> stepList;

    public Integer getProgressPercentage() {
      return progressPercentage;
    }

    public Long getRemainTime() {
      return remainTime;
    }

    public List<Step> getStepList() {
      return stepList;
    }
  }

  /** A step of a task's progress; its status key is spelled {@code statue} on the wire. */
  public static class Step {
    @JsonProperty("name")
    private String name;

    @JsonProperty("statue")
    private String statue;

    @JsonProperty("start_time")
    private Long startTime;

    @JsonProperty("end_time")
    private Long endTime;

    public String getName() {
      return name;
    }

    public String getStatue() {
      return statue;
    }

    public Long getStartTime() {
      return startTime;
    }

    public Long getEndTime() {
      return endTime;
    }
  }

  /** The answer of ListScheduledTasks: {@code job_count} is a number, unlike {@code task_count}. */
  public static class ScheduledTasks extends SdkResponse {
    @JsonProperty("job_count")
    private Integer jobCount;

    @JsonProperty("jobs")
    private List<ScheduledTask> jobs;

    public Integer getJobCount() {
      return jobCount;
    }

    public List<ScheduledTask> getJobs() {
      return jobs;
    }
  }

  public static class ScheduledTask {
    @JsonProperty("id")
    private String id;

    @JsonProperty("name")
    private String name;

    @JsonProperty("status")
    private String status;

    @JsonProperty("params")
    private String params;

    @JsonProperty("created_at")
    private String createdAt;

    @JsonProperty("schedule_at")
    private String scheduleAt;

    public String getId() {
      return id;
    }

    public String getName() {
      return name;
    }

    public String getStatus() {
      return status;
    }

    public String getParams() {
      return params;
    }

    public String getCreatedAt() {
      return createdAt;
    }

    public String getScheduleAt() {
      return scheduleAt;
    }
  }

  /** The answer of ShowUpgradeInstanceVersion. */
  public static class Versions extends SdkResponse {
    @JsonProperty("current_version")
    private String currentVersion;

    @JsonProperty("latest_version")
    private String latestVersion;

    public String getCurrentVersion() {
      return currentVersion;
    }

    public String getLatestVersion() {
      return latestVersion;
    }
  }

  /** The answer of UpgradeInstance: a job id, or a schedule id when scheduled. */
  public static class UpgradeResult extends SdkResponse {
    @JsonProperty("job_id")
    private String jobId;

    @JsonProperty("schedule_id")
    private String scheduleId;

    public String getJobId() {
      return jobId;
    }

    public String getScheduleId() {
      return scheduleId;
    }
  }

  public static class CreatedInstance extends SdkResponse {
    @JsonProperty("instance_id")
    private String instanceId;

    public String getInstanceId() {
      return instanceId;
    }
  }

  /** An answer with no body (204). */
  public static class NoContent extends SdkResponse {}

  private static final String TASK = "/v2/{project_id}/instances/{instance_id}/";
  private static final String UPGRADE = "/v2/{project_id}/kafka/instances/{instance_id}/upgrade";

  private static final HttpRequestDef<TaskRef, Progress> SHOW_PROGRESS =
      def(HttpMethod.GET, TaskRef.class, Progress.class, "ShowBackgroundTaskProgress",
          TASK + "tasks/{task_id}/progress")
          .withRequestField(path("instance_id", TaskRef::instanceId))
          .withRequestField(path("task_id", TaskRef::taskId))
          .build();

  private static final HttpRequestDef<ListScheduled, ScheduledTasks> LIST_SCHEDULED =
      def(HttpMethod.GET, ListScheduled.class, ScheduledTasks.class, "ListScheduledTasks",
          TASK + "scheduled-tasks")
          .withRequestField(path("instance_id", ListScheduled::instanceId))
          .withRequestField(query("start", ListScheduled::start))
          .withRequestField(query("limit", ListScheduled::limit))
          .withRequestField(query("begin_time", ListScheduled::beginTime))
          .withRequestField(query("end_time", ListScheduled::endTime))
          .build();

  private static final HttpRequestDef<UpdateScheduled, NoContent> UPDATE_SCHEDULED =
      def(HttpMethod.PUT, UpdateScheduled.class, NoContent.class, "UpdateScheduledTask",
          TASK + "scheduled-tasks/{task_id}")
          .withRequestField(path("instance_id", UpdateScheduled::instanceId))
          .withRequestField(path("task_id", UpdateScheduled::taskId))
          .withRequestField(query("execute_at", UpdateScheduled::executeAt))
          .withRequestField(query("status", UpdateScheduled::status))
          .build();

  private static final HttpRequestDef<TaskRef, NoContent> DELETE_SCHEDULED =
      def(HttpMethod.DELETE, TaskRef.class, NoContent.class, "DeleteScheduledTask",
          TASK + "scheduled-tasks/{task_id}")
          .withRequestField(path("instance_id", TaskRef::instanceId))
          .withRequestField(path("task_id", TaskRef::taskId))
          .build();

  private static final HttpRequestDef<InstanceRef, Versions> SHOW_UPGRADE_VERSION =
      def(HttpMethod.GET, InstanceRef.class, Versions.class, "ShowUpgradeInstanceVersion", UPGRADE)
          .withRequestField(path("instance_id", InstanceRef::instanceId))
          .build();

  private static final HttpRequestDef<Upgrade, UpgradeResult> UPGRADE_INSTANCE =
      def(HttpMethod.POST, Upgrade.class, UpgradeResult.class, "UpgradeInstance", UPGRADE)
          .withRequestField(path("instance_id", Upgrade::instanceId))
          .withRequestField(new FieldImpl<Upgrade, UpgradeBody>(
              "body", LocationType.Body, FieldExistence.NON_NULL_NON_EMPTY, UpgradeBody.class)
              .withReader(Upgrade::body))
          .build();

  private static final HttpRequestDef<CreatePostPaid, CreatedInstance> CREATE_POST_PAID_KAFKA =
      def(HttpMethod.POST, CreatePostPaid.class, CreatedInstance.class, "CreatePostPaidKafkaInstance",
          "/v2/{project_id}/kafka/instances")
          .withRequestField(new FieldImpl<CreatePostPaid, CreateInstanceByEngineReq>(
              "body", LocationType.Body, FieldExistence.NON_NULL_NON_EMPTY, CreateInstanceByEngineReq.class)
              .withReader(CreatePostPaid::body))
          .build();

  private static <R, S> HttpRequestDef.Builder<R, S> def(HttpMethod method, Class<R> req, Class<S> res,
      String name, String uri) {
    return HttpRequestDef.builder(method, req, res).withName(name).withUri(uri)
        .withContentType("application/json");
  }

  private static <R> FieldImpl<R, String> path(String name, Function<R, String> get) {
    return new FieldImpl<R, String>(
        name, LocationType.Path, FieldExistence.NON_NULL_NON_EMPTY, String.class).withReader(get);
  }

  private static <R> FieldImpl<R, String> query(String name, Function<R, String> get) {
    return new FieldImpl<R, String>(
        name, LocationType.Query, FieldExistence.NULL_IGNORE, String.class).withReader(get);
  }

  Progress showBackgroundTaskProgress(String instanceId, String taskId) {
    return hcClient.syncInvokeHttp(new TaskRef(instanceId, taskId), SHOW_PROGRESS);
  }

  ScheduledTasks listScheduledTasks(ListScheduled request) {
    return hcClient.syncInvokeHttp(request, LIST_SCHEDULED);
  }

  NoContent updateScheduledTask(UpdateScheduled request) {
    return hcClient.syncInvokeHttp(request, UPDATE_SCHEDULED);
  }

  NoContent deleteScheduledTask(String instanceId, String taskId) {
    return hcClient.syncInvokeHttp(new TaskRef(instanceId, taskId), DELETE_SCHEDULED);
  }

  Versions showUpgradeInstanceVersion(String instanceId) {
    return hcClient.syncInvokeHttp(new InstanceRef(instanceId), SHOW_UPGRADE_VERSION);
  }

  UpgradeResult upgradeInstance(String instanceId, UpgradeBody body) {
    return hcClient.syncInvokeHttp(new Upgrade(instanceId, body), UPGRADE_INSTANCE);
  }

  CreatedInstance createPostPaidKafkaInstance(CreateInstanceByEngineReq body) {
    return hcClient.syncInvokeHttp(new CreatePostPaid(body), CREATE_POST_PAID_KAFKA);
  }
}
