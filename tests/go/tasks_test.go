package gosdk

// The four background-task calls (List, Show, ShowProgress, Delete) through the Go SDK.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kafka/v2/model"
)

func TestBackgroundTasks(t *testing.T) { forEachSigning(t, testBackgroundTasks) }

func testBackgroundTasks(t *testing.T, signing string) {
	t.Parallel()
	s := startServer(t, "--time-scale", "0")
	s.signing = signing
	rec := &Recorder{}
	c := s.clientWith(t, s.Admin, clientOptions{recorder: rec})
	v := s.view(t, s.Admin)
	iid := createInstance(t, c, "go-sdk-tasks")

	t.Run("the instance is shown and listed, with its createInstance task", func(t *testing.T) {
		shown, err := c.ShowInstance(&model.ShowInstanceRequest{InstanceId: iid})
		must(t, err)
		if deref(shown.InstanceId) != iid || deref(shown.EngineVersion) != "2.7" ||
			deref(shown.BrokerNum) != 3 || deref(shown.StorageSpace) != 300 {
			t.Fatalf("ShowInstance: %v", shown)
		}
		listed, err := c.ListInstances(&model.ListInstancesRequest{Engine: model.GetListInstancesRequestEngineEnum().KAFKA})
		must(t, err)
		found := false
		for _, i := range deref(listed.Instances) {
			found = found || deref(i.InstanceId) == iid
		}
		if !found {
			t.Fatalf("ListInstances lacks %s: %v", iid, listed)
		}
		tasks := tasksOf(listAll(t, c, iid))
		if len(tasks) != 1 || deref(tasks[0].Name) != "createInstance" || deref(tasks[0].Status) != "SUCCESS" {
			t.Fatalf("tasks of a new instance: %v", tasks)
		}
	})

	t.Run("a config change is a task: shown, with progress, deleted (204), then 404", func(t *testing.T) {
		res, err := c.ModifyInstanceConfigs(&model.ModifyInstanceConfigsRequest{InstanceId: iid,
			Body: &model.ModifyInstanceConfigsReq{KafkaConfigs: &[]model.ModifyInstanceConfig{
				{Name: ptr("log.retention.hours"), Value: ptr("36")}}}})
		must(t, err)
		job := deref(res.JobId)
		if !hex32.MatchString(job) || deref(res.DynamicConfig) != 1 || deref(res.StaticConfig) != 0 {
			t.Fatalf("ModifyInstanceConfigs: %v", res)
		}
		finish(t, c, iid, job)
		configs, err := c.ShowInstanceConfigs(&model.ShowInstanceConfigsRequest{InstanceId: iid})
		must(t, err)
		value := ""
		for _, cfg := range deref(configs.KafkaConfigs) {
			if deref(cfg.Name) == "log.retention.hours" {
				value = deref(cfg.Value)
			}
		}
		if value != "36" {
			t.Fatalf("log.retention.hours is %q after the change", value)
		}

		shown, err := c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: iid, TaskId: job})
		must(t, err)
		if deref(shown.TaskCount) != "1" || len(deref(shown.Tasks)) != 1 {
			t.Fatalf("ShowBackgroundTask: %v", shown)
		}
		task := deref(shown.Tasks)[0]
		if deref(task.Id) != job || deref(task.Name) != "kafkaConfigModify" || deref(task.Status) != "SUCCESS" ||
			deref(task.UserName) != s.Admin.UserName || deref(task.UserId) != s.Admin.UserID {
			t.Fatalf("task: %v", task)
		}
		if !isoTime.MatchString(deref(task.CreatedAt)) || !isoTime.MatchString(deref(task.UpdatedAt)) {
			t.Fatalf("times: %q %q", deref(task.CreatedAt), deref(task.UpdatedAt))
		}
		var params struct {
			KafkaConfigs []map[string]string `json:"kafka_configs"`
		}
		if err := json.Unmarshal([]byte(deref(task.Params)), &params); err != nil {
			t.Fatalf("params %q: %v", deref(task.Params), err)
		}
		want := []map[string]string{{"name": "log.retention.hours", "old_value": "72", "new_value": "36"}}
		if !equalJSON(params.KafkaConfigs, want) {
			t.Fatalf("params: %s", deref(task.Params))
		}

		progress, err := c.ShowBackgroundTaskProgress(&model.ShowBackgroundTaskProgressRequest{InstanceId: iid,
			TaskId: job})
		must(t, err)
		steps := deref(progress.StepList)
		if deref(progress.ProgressPercentage) != 100 || deref(progress.RemainTime) != 0 || len(steps) == 0 {
			t.Fatalf("progress: %v", progress)
		}
		for _, st := range steps {
			start, end := deref(st.StartTime), deref(st.EndTime)
			if deref(st.Statue) != "COMPLETED" || start < 1_500_000_000_000 || end < start {
				t.Fatalf("step: %v", st)
			}
		}

		deleted, err := c.DeleteBackgroundTask(&model.DeleteBackgroundTaskRequest{InstanceId: iid, TaskId: job})
		must(t, err)
		if deleted.HttpStatusCode != http.StatusNoContent {
			t.Fatalf("DeleteBackgroundTask answered %d", deleted.HttpStatusCode)
		}
		if ex := rec.last(t); ex.Method != http.MethodDelete || len(ex.RespBody) != 0 {
			t.Fatalf("the delete's answer: %s %d %q", ex.Method, ex.Status, ex.RespBody)
		}
		_, err = c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: iid, TaskId: job})
		se := serviceError(t, err, 404, "DMS.00404070")
		if se.ErrorMessage != "The background task does not exist." {
			t.Fatalf("error_msg %q", se.ErrorMessage)
		}
		_, err = c.DeleteBackgroundTask(&model.DeleteBackgroundTaskRequest{InstanceId: iid, TaskId: job})
		serviceError(t, err, 404, "DMS.00404070")
		_, err = c.ShowBackgroundTaskProgress(&model.ShowBackgroundTaskProgressRequest{InstanceId: iid, TaskId: job})
		serviceError(t, err, 404, "DMS.00404070")

		// Seen without the SDK: gone from Show and from the list.
		status, body := v.call(t, http.MethodGet, "instances/"+iid+"/tasks/"+job, nil)
		if status != 404 || body["error_code"] != "DMS.00404070" {
			t.Fatalf("view of the deleted task: %d %v", status, body)
		}
		listed := v.get(t, "instances/"+iid+"/tasks", url.Values{"limit": {"100"}})
		if slices.Contains(taskIDs(t, listed, "tasks"), job) {
			t.Fatalf("the deleted task is still listed: %v", listed)
		}
	})

	t.Run("the list pages with start and limit as Terraform walks it", func(t *testing.T) {
		for _, enable := range []bool{true, false, true} {
			res, err := c.UpdateInstanceAutoCreateTopic(&model.UpdateInstanceAutoCreateTopicRequest{InstanceId: iid,
				Body: &model.UpdateInstanceAutoCreateTopicReq{EnableAutoTopic: enable}})
			must(t, err)
			if res.HttpStatusCode >= 300 {
				t.Fatalf("UpdateInstanceAutoCreateTopic answered %d", res.HttpStatusCode)
			}
			waitFor(t, "auto topic applied", func() bool {
				shown, err := c.ShowInstance(&model.ShowInstanceRequest{InstanceId: iid})
				return err == nil && deref(shown.EnableAutoTopic) == enable && deref(shown.Status) == "RUNNING"
			})
		}
		full := listAll(t, c, iid)
		all := ids(tasksOf(full))
		if deref(full.TaskCount) != itoa(len(all)) || len(all) < 4 {
			t.Fatalf("task_count %q for %d tasks", deref(full.TaskCount), len(all))
		}
		for _, task := range tasksOf(full) {
			if deref(task.Name) == "modifyAutoTopic" || deref(task.Name) == "kafkaConfigModify" {
				continue
			}
			if deref(task.Name) != "createInstance" {
				t.Fatalf("unexpected task %v", task)
			}
		}

		var seen []string
		start := int32(1)
		for range 50 {
			page, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid,
				Start: ptr(start), Limit: ptr[int32](2)})
			must(t, err)
			got := ids(tasksOf(page))
			if len(got) > 2 {
				t.Fatalf("limit 2 gave %d tasks", len(got))
			}
			seen = append(seen, got...)
			start += int32(len(got))
			if atoi(t, deref(page.TaskCount)) <= int(start)-1 {
				break
			}
		}
		if !slices.Equal(seen, all) {
			t.Fatalf("pages %v, whole list %v", seen, all)
		}
		// Newest first, as the token view (no SDK) lists them too.
		if viewed := taskIDs(t, v.get(t, "instances/"+iid+"/tasks", url.Values{"limit": {"100"}}), "tasks"); !slices.Equal(viewed, all) {
			t.Fatalf("the SDK lists %v, the view %v", all, viewed)
		}

		first, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid, Start: ptr[int32](0),
			Limit: ptr[int32](1)})
		must(t, err)
		if got := ids(tasksOf(first)); !slices.Equal(got, all[:1]) {
			t.Fatalf("start=0 gave %v, want the first task %v", got, all[:1])
		}
		past, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid,
			Start: ptr(int32(len(all) + 5)), Limit: ptr[int32](10)})
		must(t, err)
		if len(tasksOf(past)) != 0 || past.Tasks == nil || deref(past.TaskCount) != itoa(len(all)) {
			t.Fatalf("a start past the end: %v", past)
		}

		for _, limit := range []int32{0, 101} {
			_, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid, Limit: ptr(limit)})
			serviceError(t, err, 400, "DMS.00400062")
		}
	})

	t.Run("the list filters on begin_time and end_time, both inclusive", func(t *testing.T) {
		full := tasksOf(listAll(t, c, iid))
		now := time.Now()
		window, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid,
			BeginTime: ptr(stamp(now.Add(-time.Hour))), EndTime: ptr(stamp(now.Add(time.Hour))), Limit: ptr[int32](100)})
		must(t, err)
		if !slices.Equal(ids(tasksOf(window)), ids(full)) {
			t.Fatalf("an hour either side: %v, want %v", ids(tasksOf(window)), ids(full))
		}

		// One more task in a second of its own: a window of that one second (begin = end) holds
		// exactly it, and a window ending the second before holds everything else.
		newest, err := time.Parse(dmsTime, deref(full[0].CreatedAt))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(newest.Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
		res, err := c.UpdateInstanceAutoCreateTopic(&model.UpdateInstanceAutoCreateTopicRequest{InstanceId: iid,
			Body: &model.UpdateInstanceAutoCreateTopicReq{EnableAutoTopic: false}})
		must(t, err)
		if res.HttpStatusCode >= 300 {
			t.Fatalf("UpdateInstanceAutoCreateTopic answered %d", res.HttpStatusCode)
		}
		waitFor(t, "instance RUNNING", func() bool { return instanceStatus(c, iid) == "RUNNING" })
		latest := tasksOf(listAll(t, c, iid))[0]
		created, err := time.Parse(dmsTime, deref(latest.CreatedAt))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, task := range tasksOf(listAll(t, c, iid)) {
			if at, _ := time.Parse(dmsTime, deref(task.CreatedAt)); at.Truncate(time.Second).Equal(created.Truncate(time.Second)) {
				want = append(want, deref(task.Id))
			}
		}
		if len(want) != 1 || want[0] != deref(latest.Id) {
			t.Fatalf("the new task does not have its second to itself: %v", want)
		}
		second := stamp(created)
		one, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid, BeginTime: ptr(second),
			EndTime: ptr(second), Limit: ptr[int32](100)})
		must(t, err)
		if !slices.Equal(ids(tasksOf(one)), want) || deref(one.TaskCount) != "1" {
			t.Fatalf("within %s: %v (%q), want %v", second, ids(tasksOf(one)), deref(one.TaskCount), want)
		}
		before, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid,
			EndTime: ptr(stamp(created.Add(-time.Second))), Limit: ptr[int32](100)})
		must(t, err)
		if !slices.Equal(ids(tasksOf(before)), ids(full)) {
			t.Fatalf("up to the second before: %v, want %v", ids(tasksOf(before)), ids(full))
		}

		future, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid,
			BeginTime: ptr(stamp(now.Add(24 * time.Hour)))})
		must(t, err)
		if deref(future.TaskCount) != "0" || future.Tasks == nil || len(*future.Tasks) != 0 {
			t.Fatalf("begin_time tomorrow: %v", future)
		}
		past, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid,
			EndTime: ptr(stamp(now.Add(-24 * time.Hour)))})
		must(t, err)
		if deref(past.TaskCount) != "0" {
			t.Fatalf("end_time yesterday: %v", past)
		}

		_, err = c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid,
			BeginTime: ptr(stamp(now)), EndTime: ptr(stamp(now.Add(-time.Hour)))})
		serviceError(t, err, 400, "DMS.00400062")
		_, err = c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid, BeginTime: ptr("yesterday")})
		serviceError(t, err, 400, "DMS.00400142")
		_, err = c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid, EndTime: ptr("20241301000000")})
		serviceError(t, err, 400, "DMS.00400142")
	})

	t.Run("bad ids and unknown instances are answered in DMS format", func(t *testing.T) {
		_, err := c.DeleteBackgroundTask(&model.DeleteBackgroundTaskRequest{InstanceId: iid, TaskId: "nope"})
		serviceError(t, err, 400, "DMS.00400070")
		_, err = c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: iid, TaskId: zeros})
		serviceError(t, err, 404, "DMS.00404070")
		_, err = c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: unknownIID, TaskId: zeros})
		serviceError(t, err, 404, "DMS.00404022")
		_, err = c.DeleteBackgroundTask(&model.DeleteBackgroundTaskRequest{InstanceId: unknownIID, TaskId: zeros})
		serviceError(t, err, 404, "DMS.00404022")
		_, err = c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: "not-a-uuid"})
		serviceError(t, err, 400, "DMS.00400030")
	})
}

// TestRunningTask uses realistic durations: creating an instance takes minutes, so its task is
// still running when the tests reach it.
func TestRunningTask(t *testing.T) { withDefaultSigning(t, testRunningTask) }

func testRunningTask(t *testing.T, signing string) {
	t.Parallel()
	s := startServer(t, "--time-scale", "1")
	s.signing = signing
	c := s.client(t, s.Admin)
	v := s.view(t, s.Admin)

	res, err := c.CreateInstanceByEngine(&model.CreateInstanceByEngineRequest{
		Engine: model.GetCreateInstanceByEngineRequestEngineEnum().KAFKA, Body: engineBody("go-sdk-slow")})
	must(t, err)
	iid := deref(res.InstanceId)
	tasks := tasksOf(listAll(t, c, iid))
	if len(tasks) != 1 || deref(tasks[0].Name) != "createInstance" {
		t.Fatalf("tasks: %v", tasks)
	}
	create := deref(tasks[0].Id)
	if st := deref(tasks[0].Status); st != "CREATED" && st != "EXECUTING" {
		t.Fatalf("createInstance is %s at once", st)
	}

	_, err = c.DeleteBackgroundTask(&model.DeleteBackgroundTaskRequest{InstanceId: iid, TaskId: create})
	se := serviceError(t, err, 400, "DMS.00400017")
	if se.ErrorMessage != "This DMS instance job task is still running." {
		t.Fatalf("error_msg %q", se.ErrorMessage)
	}
	_, err = c.ModifyInstanceConfigs(&model.ModifyInstanceConfigsRequest{InstanceId: iid,
		Body: &model.ModifyInstanceConfigsReq{KafkaConfigs: &[]model.ModifyInstanceConfig{
			{Name: ptr("log.retention.hours"), Value: ptr("24")}}}})
	serviceError(t, err, 400, "DMS.00400026")

	// Nothing changed: the task is still there and still the only one.
	listed := v.get(t, "instances/"+iid+"/tasks", nil)
	if got := taskIDs(t, listed, "tasks"); !slices.Equal(got, []string{create}) || listed["task_count"] != "1" {
		t.Fatalf("after the refusals: %v", listed)
	}
	progress, err := c.ShowBackgroundTaskProgress(&model.ShowBackgroundTaskProgressRequest{InstanceId: iid,
		TaskId: create})
	must(t, err)
	if p := deref(progress.ProgressPercentage); p >= 100 || deref(progress.RemainTime) <= 0 {
		t.Fatalf("a task that has just started: %v", progress)
	}
}

const zeros = "00000000000000000000000000000000"

// dmsTime is the layout of created_at, updated_at and schedule_at.
const dmsTime = "2006-01-02T15:04:05.000Z"

func ids(tasks []model.ListBackgroundTasksRespTasks) []string {
	out := make([]string, 0, len(tasks))
	for _, task := range tasks {
		out = append(out, deref(task.Id))
	}
	return out
}

// equalJSON compares two values by their JSON form.
func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}
