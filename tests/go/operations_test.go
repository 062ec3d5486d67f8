package gosdk

// The instance operations that start background tasks, through the Go SDK: resize, partition
// reassignment (now, estimated, refused), restart by the batch action, kernel upgrade (now and
// scheduled), and the instance calls around them (CreatePostPaidKafkaInstance, UpdateInstance).

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kafka/v2/model"
)

func TestOperations(t *testing.T) { withDefaultSigning(t, testOperations) }

func testOperations(t *testing.T, signing string) {
	t.Parallel()
	s := startServer(t, "--time-scale", "0")
	s.signing = signing
	c := s.client(t, s.Admin)
	v := s.view(t, s.Admin)

	t.Run("resize grows the storage through a task with steps, by either SDK call", func(t *testing.T) {
		iid := createInstance(t, c, "go-sdk-resize")
		// ResizeKafkaInstance: POST /v2/{project_id}/kafka/instances/{instance_id}/extend.
		first, err := c.ResizeKafkaInstance(&model.ResizeKafkaInstanceRequest{InstanceId: iid,
			Body: &model.ResizeEngineInstanceReq{OperType: "storage", NewStorageSpace: ptr[int32](600)}})
		must(t, err)
		finish(t, c, iid, deref(first.JobId))
		// ResizeEngineInstance: POST /v2/{engine}/{project_id}/instances/{instance_id}/extend.
		res, err := c.ResizeEngineInstance(&model.ResizeEngineInstanceRequest{
			Engine: model.GetResizeEngineInstanceRequestEngineEnum().KAFKA, InstanceId: iid,
			Body: &model.ResizeEngineInstanceReq{OperType: "storage", NewStorageSpace: ptr[int32](100000)}})
		must(t, err)
		job := deref(res.JobId)
		if !hex32.MatchString(job) {
			t.Fatalf("ResizeEngineInstance: %v", res)
		}
		finish(t, c, iid, job)
		shown, err := c.ShowInstance(&model.ShowInstanceRequest{InstanceId: iid})
		must(t, err)
		if deref(shown.StorageSpace) != 100000 {
			t.Fatalf("storage_space %d after the resizes", deref(shown.StorageSpace))
		}
		progress, err := c.ShowBackgroundTaskProgress(&model.ShowBackgroundTaskProgressRequest{InstanceId: iid,
			TaskId: job})
		must(t, err)
		if deref(progress.ProgressPercentage) != 100 || len(deref(progress.StepList)) < 2 {
			t.Fatalf("resize progress: %v", progress)
		}
		var names []string
		for _, task := range tasksOf(listAll(t, c, iid)) {
			names = append(names, deref(task.Name)+" "+deref(task.Status))
		}
		if !slices.Equal(names, []string{"extendInstance SUCCESS", "extendInstance SUCCESS", "createInstance SUCCESS"}) {
			t.Fatalf("tasks: %v", names)
		}
	})

	t.Run("reassignment now, an estimate that makes no task, an unknown broker refused, params without unset fields", func(t *testing.T) {
		iid := createInstance(t, c, "go-sdk-reassign")
		now, err := c.CreateKafkaReassignmentTask(&model.CreateKafkaReassignmentTaskRequest{InstanceId: iid,
			Body: &model.PartitionReassignRequest{Throttle: ptr[int32](-1),
				Reassignments: []model.PartitionReassignEntity{
					{Topic: "orders", Brokers: &[]int32{0, 1, 2}, ReplicationFactor: ptr[int32](3)}}}})
		must(t, err)
		job := deref(now.JobId)
		if !hex32.MatchString(job) {
			t.Fatalf("CreateKafkaReassignmentTask: %v", now)
		}
		finish(t, c, iid, job)
		shown, err := c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: iid, TaskId: job})
		must(t, err)
		if task := deref(shown.Tasks)[0]; deref(task.Name) != "kafkaPartitionReassign" ||
			!strings.Contains(deref(task.Params), `"orders"`) {
			t.Fatalf("the reassignment task: %v", task)
		}

		before := v.get(t, "instances/"+iid+"/tasks", nil)["task_count"]
		estimate, err := c.CreateKafkaReassignmentTask(&model.CreateKafkaReassignmentTaskRequest{InstanceId: iid,
			Body: &model.PartitionReassignRequest{TimeEstimate: ptr(true),
				Reassignments: []model.PartitionReassignEntity{{Topic: "orders", Brokers: &[]int32{0, 1}}}}})
		must(t, err)
		if estimate.ReassignmentTime == nil || *estimate.ReassignmentTime < 0 || estimate.JobId != nil {
			t.Fatalf("an estimate: %v", estimate)
		}
		if after := v.get(t, "instances/"+iid+"/tasks", nil)["task_count"]; after != before {
			t.Fatalf("an estimate made a task: task_count %v then %v", before, after)
		}

		_, err = c.CreateKafkaReassignmentTask(&model.CreateKafkaReassignmentTaskRequest{InstanceId: iid,
			Body: &model.PartitionReassignRequest{
				Reassignments: []model.PartitionReassignEntity{{Topic: "orders", Brokers: &[]int32{0, 9}}}}})
		serviceError(t, err, 400, "DMS.00400062")
		if after := v.get(t, "instances/"+iid+"/tasks", nil)["task_count"]; after != before {
			t.Fatalf("a refused reassignment made a task: task_count %v then %v", before, after)
		}

		// Fields not given are left out of the task's params (the SDK omits them from the body).
		plain, err := c.CreateKafkaReassignmentTask(&model.CreateKafkaReassignmentTaskRequest{InstanceId: iid,
			Body: &model.PartitionReassignRequest{
				Reassignments: []model.PartitionReassignEntity{{Topic: "orders", Brokers: &[]int32{0, 1}}}}})
		must(t, err)
		finish(t, c, iid, deref(plain.JobId))
		shown, err = c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: iid, TaskId: deref(plain.JobId)})
		must(t, err)
		params := deref(deref(shown.Tasks)[0].Params)
		var fields map[string]any
		if err := json.Unmarshal([]byte(params), &fields); err != nil {
			t.Fatalf("params %q: %v", params, err)
		}
		for key, value := range fields {
			if key == "throttle" || value == nil {
				t.Fatalf("params carry %s=%v: %s", key, value, params)
			}
		}
	})

	t.Run("restart by the batch action is a restartInstance task", func(t *testing.T) {
		iid := createInstance(t, c, "go-sdk-restart")
		out, err := c.BatchRestartOrDeleteInstances(&model.BatchRestartOrDeleteInstancesRequest{
			Body: &model.BatchRestartOrDeleteInstanceReq{Instances: &[]string{iid},
				Action: model.GetBatchRestartOrDeleteInstanceReqActionEnum().RESTART}})
		must(t, err)
		results := deref(out.Results)
		if len(results) != 1 || deref(results[0].Instance) != iid || deref(results[0].Result) != "success" {
			t.Fatalf("BatchRestartOrDeleteInstances: %v", out)
		}
		var restart string
		for _, task := range tasksOf(listAll(t, c, iid)) {
			if deref(task.Name) == "restartInstance" {
				restart = deref(task.Id)
			}
		}
		if restart == "" {
			t.Fatalf("no restartInstance task: %v", listAll(t, c, iid))
		}
		finish(t, c, iid, restart)
	})

	versions := func(t *testing.T, iid string) (current, latest string) {
		t.Helper()
		res, err := c.ShowUpgradeInstanceVersion(&model.ShowUpgradeInstanceVersionRequest{InstanceId: iid})
		must(t, err)
		current, latest = deref(res.CurrentVersion), deref(res.LatestVersion)
		if res.HttpStatusCode != http.StatusOK || current == "" || latest == "" {
			t.Fatalf("ShowUpgradeInstanceVersion: %v", res)
		}
		return current, latest
	}
	engineVersion := func(t *testing.T, iid string) string {
		t.Helper()
		shown, err := c.ShowInstance(&model.ShowInstanceRequest{InstanceId: iid})
		must(t, err)
		return deref(shown.EngineVersion)
	}

	t.Run("no upgrade on the latest kernel", func(t *testing.T) {
		iid := createInstance(t, c, "go-sdk-kernel-latest")
		if current, latest := versions(t, iid); current != latest {
			t.Fatalf("a new instance runs %s, latest %s", current, latest)
		}
		_, err := c.UpgradeInstance(&model.UpgradeInstanceRequest{InstanceId: iid,
			Body: &model.UpgradeInstanceReq{IsSchedule: ptr(false)}})
		serviceErrorLike(t, err, 400, `^DMS\.\d{8}$`)
		if len(tasksOf(listAll(t, c, iid))) != 1 {
			t.Fatal("a refused upgrade made a task")
		}
	})

	t.Run("a kernel upgrade rolls broker by broker and keeps the Kafka version", func(t *testing.T) {
		iid := createInstance(t, c, "go-sdk-kernel-upgrade")
		before, _ := versions(t, iid)
		s.addKernel(t, "2.7", "2.7.1-h0.cbu.dms.401.r0")
		current, latest := versions(t, iid)
		if current != before || latest != "2.7.1-h0.cbu.dms.401.r0" {
			t.Fatalf("after kernels add: current %s (was %s), latest %s", current, before, latest)
		}
		res, err := c.UpgradeInstance(&model.UpgradeInstanceRequest{InstanceId: iid,
			Body: &model.UpgradeInstanceReq{IsSchedule: ptr(false)}})
		must(t, err)
		job := deref(res.JobId)
		if !hex32.MatchString(job) || res.ScheduleId != nil {
			t.Fatalf("UpgradeInstance: %v", res)
		}
		finish(t, c, iid, job)
		shown, err := c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: iid, TaskId: job})
		must(t, err)
		if name := deref(deref(shown.Tasks)[0].Name); name != "upgradeInstance" {
			t.Fatalf("task name %q", name)
		}
		progress, err := c.ShowBackgroundTaskProgress(&model.ShowBackgroundTaskProgressRequest{InstanceId: iid,
			TaskId: job})
		must(t, err)
		var brokerSteps []string
		for _, st := range deref(progress.StepList) {
			if deref(st.Statue) != "COMPLETED" {
				t.Fatalf("step %v", st)
			}
			if strings.Contains(strings.ToLower(deref(st.Name)), "broker") {
				brokerSteps = append(brokerSteps, deref(st.Name))
			}
		}
		if len(brokerSteps) != 3 || len(slices.Compact(slices.Sorted(slices.Values(brokerSteps)))) != 3 {
			t.Fatalf("one step per broker expected: %v", brokerSteps)
		}
		if current, latest := versions(t, iid); current != latest || latest != "2.7.1-h0.cbu.dms.401.r0" {
			t.Fatalf("after the upgrade: current %s, latest %s", current, latest)
		}
		if ev := engineVersion(t, iid); ev != "2.7" {
			t.Fatalf("engine_version %q after a kernel upgrade", ev)
		}
	})

	t.Run("a scheduled upgrade, cancelled, put back with status null, then run", func(t *testing.T) {
		iid := createInstance(t, c, "go-sdk-kernel-scheduled")
		s.addKernel(t, "2.7", "2.7.1-h0.cbu.dms.402.r0")
		res, err := c.UpgradeInstance(&model.UpgradeInstanceRequest{InstanceId: iid,
			Body: &model.UpgradeInstanceReq{IsSchedule: ptr(true), ExecuteAt: ptr(time.Now().Add(time.Hour).UnixMilli())}})
		must(t, err)
		sid := deref(res.ScheduleId)
		if !hex32.MatchString(sid) || res.JobId != nil {
			t.Fatalf("a scheduled UpgradeInstance: %v", res)
		}
		_, err = c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
			Status: ptr("CANCELLED")})
		must(t, err)
		// DMS documents `null` ("to be executed") among the statuses: it puts a cancelled task back.
		back, err := c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
			Status: ptr("null")})
		must(t, err)
		if back.HttpStatusCode != http.StatusNoContent {
			t.Fatalf("status=null answered %d", back.HttpStatusCode)
		}
		jobs, err := c.ListScheduledTasks(&model.ListScheduledTasksRequest{InstanceId: iid})
		must(t, err)
		if j := jobsOf(jobs); len(j) != 1 || deref(j[0].Id) != sid || deref(j[0].Name) != "upgradeInstance" ||
			deref(j[0].Status) != "CREATED" {
			t.Fatalf("scheduled tasks: %v", jobs)
		}
		_, err = c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
			ExecuteAt: ptr(stamp(time.Now().Add(2 * time.Second)))})
		must(t, err)
		finish(t, c, iid, sid)
		if current, _ := versions(t, iid); current != "2.7.1-h0.cbu.dms.402.r0" {
			t.Fatalf("current_version %s after the scheduled upgrade", current)
		}
		if ev := engineVersion(t, iid); ev != "2.7" {
			t.Fatalf("engine_version %q after a kernel upgrade", ev)
		}
	})

	t.Run("CreatePostPaidKafkaInstance makes an instance through a createInstance task", func(t *testing.T) {
		res, err := c.CreatePostPaidKafkaInstance(&model.CreatePostPaidKafkaInstanceRequest{
			Body: engineBody("go-sdk-postpaid")})
		must(t, err)
		iid := deref(res.InstanceId)
		if len(iid) != 36 {
			t.Fatalf("CreatePostPaidKafkaInstance: %v", res)
		}
		waitFor(t, "instance RUNNING", func() bool { return instanceStatus(c, iid) == "RUNNING" })
		listed, err := c.ListInstances(&model.ListInstancesRequest{Engine: model.GetListInstancesRequestEngineEnum().KAFKA})
		must(t, err)
		var names []string
		for _, i := range deref(listed.Instances) {
			if deref(i.InstanceId) == iid {
				names = append(names, deref(i.Name)+" "+deref(i.EngineVersion))
			}
		}
		if !slices.Equal(names, []string{"go-sdk-postpaid 2.7"}) {
			t.Fatalf("ListInstances: %v", names)
		}
		tasks := tasksOf(listAll(t, c, iid))
		if len(tasks) != 1 || deref(tasks[0].Name) != "createInstance" || deref(tasks[0].Status) != "SUCCESS" {
			t.Fatalf("tasks: %v", tasks)
		}
	})

	t.Run("UpdateInstance changes what Show and List return; a bad policy changes nothing", func(t *testing.T) {
		iid := createInstance(t, c, "go-sdk-update")
		res, err := c.UpdateInstance(&model.UpdateInstanceRequest{InstanceId: iid, Body: &model.UpdateInstanceReq{
			Name: ptr("go-sdk-renamed"), Description: ptr("orders cluster"), MaintainBegin: ptr("02:00:00"),
			MaintainEnd: ptr("06:00:00"), SecurityGroupId: ptr("sg-2"),
			RetentionPolicy: ptr(model.GetUpdateInstanceReqRetentionPolicyEnum().PRODUCE_REJECT)}})
		must(t, err)
		if res.HttpStatusCode != http.StatusNoContent {
			t.Fatalf("UpdateInstance answered %d", res.HttpStatusCode)
		}
		shown := v.get(t, "instances/"+iid, nil)
		for key, want := range map[string]string{"name": "go-sdk-renamed", "description": "orders cluster",
			"maintain_begin": "02:00:00", "maintain_end": "06:00:00", "security_group_id": "sg-2",
			"retention_policy": "produce_reject"} {
			if shown[key] != want {
				t.Fatalf("%s is %v, want %q", key, shown[key], want)
			}
		}
		listed, err := c.ListInstances(&model.ListInstancesRequest{Engine: model.GetListInstancesRequestEngineEnum().KAFKA})
		must(t, err)
		for _, i := range deref(listed.Instances) {
			if deref(i.InstanceId) == iid && deref(i.Name) != "go-sdk-renamed" {
				t.Fatalf("ListInstances still says %q", deref(i.Name))
			}
		}

		// The SDK's enum holds only the two documented policies; its JSON is the enum's value.
		var bad model.UpdateInstanceReqRetentionPolicy
		must(t, bad.UnmarshalJSON([]byte(`"keep_forever"`)))
		_, err = c.UpdateInstance(&model.UpdateInstanceRequest{InstanceId: iid,
			Body: &model.UpdateInstanceReq{RetentionPolicy: &bad}})
		serviceErrorLike(t, err, 400, `^DMS\.00400\d{3}$`)
		if got := v.get(t, "instances/"+iid, nil)["retention_policy"]; got != "produce_reject" {
			t.Fatalf("retention_policy %v after a refused update", got)
		}
	})
}
