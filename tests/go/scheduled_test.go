package gosdk

// Scheduled tasks through the Go SDK: made by a scheduled partition reassignment, then listed,
// moved, cancelled, run and deleted (ListScheduledTasks, UpdateScheduledTask, DeleteScheduledTask).

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kafka/v2/model"
)

func TestScheduledTasks(t *testing.T) { forEachSigning(t, testScheduledTasks) }

func testScheduledTasks(t *testing.T, signing string) {
	t.Parallel()
	s := startServer(t, "--time-scale", "0")
	s.signing = signing
	rec := &Recorder{}
	c := s.clientWith(t, s.Admin, clientOptions{recorder: rec})
	v := s.view(t, s.Admin)
	iid := createInstance(t, c, "go-sdk-scheduled")

	// schedule asks for a reassignment an hour ahead and returns the scheduled task's id. The SDK's
	// CreateKafkaReassignmentTaskResponse has no schedule_id (only job_id and reassignment_time),
	// so the id is read from the answer the SDK received.
	schedule := func(t *testing.T, at time.Time) string {
		t.Helper()
		res, err := c.CreateKafkaReassignmentTask(&model.CreateKafkaReassignmentTaskRequest{InstanceId: iid,
			Body: &model.PartitionReassignRequest{
				Reassignments: []model.PartitionReassignEntity{{Topic: "orders", Brokers: &[]int32{0, 1, 2}}},
				IsSchedule:    ptr(true), ExecuteAt: ptr(at.UnixMilli())}})
		must(t, err)
		if res.JobId != nil {
			t.Fatalf("a scheduled reassignment returned job_id %q", *res.JobId)
		}
		var answer struct {
			ScheduleID string `json:"schedule_id"`
		}
		if err := json.Unmarshal(rec.last(t).RespBody, &answer); err != nil || !hex32.MatchString(answer.ScheduleID) {
			t.Fatalf("reassign answered %q", rec.last(t).RespBody)
		}
		return answer.ScheduleID
	}
	job := func(t *testing.T, sid string) map[string]any {
		t.Helper()
		listed := v.get(t, "instances/"+iid+"/scheduled-tasks", url.Values{"limit": {"100"}})
		for _, j := range listed["jobs"].([]any) {
			if j.(map[string]any)["id"] == sid {
				return j.(map[string]any)
			}
		}
		return nil
	}

	t.Run("listed, refused deletion while pending, moved, cancelled, deleted", func(t *testing.T) {
		at := time.Now().Add(time.Hour).Truncate(time.Millisecond)
		sid := schedule(t, at)

		jobs, err := c.ListScheduledTasks(&model.ListScheduledTasksRequest{InstanceId: iid, Start: ptr("1"),
			Limit: ptr("10")})
		must(t, err)
		if deref(jobs.JobCount) != 1 || len(jobsOf(jobs)) != 1 {
			t.Fatalf("ListScheduledTasks: %v", jobs)
		}
		j := jobsOf(jobs)[0]
		if deref(j.Id) != sid || deref(j.Name) != "kafkaPartitionReassign" || deref(j.Status) != "CREATED" ||
			deref(j.UserName) != s.Admin.UserName {
			t.Fatalf("job: %v", j)
		}
		if deref(j.ScheduleAt) != at.UTC().Format(dmsTime) {
			t.Fatalf("schedule_at %q, want %q", deref(j.ScheduleAt), at.UTC().Format(dmsTime))
		}
		// job_count is a number on the wire, unlike task_count.
		if _, ok := v.get(t, "instances/"+iid+"/scheduled-tasks", nil)["job_count"].(json.Number); !ok {
			t.Fatal("job_count is not a JSON number")
		}

		_, err = c.DeleteScheduledTask(&model.DeleteScheduledTaskRequest{InstanceId: iid, TaskId: sid})
		serviceError(t, err, 400, "DMS.00400017")

		later := time.Now().Add(2 * time.Hour)
		moved, err := c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
			ExecuteAt: ptr(stamp(later))})
		must(t, err)
		if moved.HttpStatusCode != http.StatusNoContent || len(rec.last(t).RespBody) != 0 {
			t.Fatalf("UpdateScheduledTask answered %d %q", moved.HttpStatusCode, rec.last(t).RespBody)
		}
		if got := job(t, sid)["schedule_at"]; got != later.UTC().Truncate(time.Second).Format(dmsTime) {
			t.Fatalf("schedule_at after the move: %v", got)
		}

		for _, bad := range []struct {
			req  model.UpdateScheduledTaskRequest
			code string
		}{
			{model.UpdateScheduledTaskRequest{}, "DMS.00400062"},
			{model.UpdateScheduledTaskRequest{ExecuteAt: ptr("tomorrow")}, "DMS.00400142"},
			{model.UpdateScheduledTaskRequest{ExecuteAt: ptr(stamp(time.Now().Add(-time.Hour)))}, "DMS.00400142"},
		} {
			bad.req.InstanceId, bad.req.TaskId = iid, sid
			_, err := c.UpdateScheduledTask(&bad.req)
			serviceError(t, err, 400, bad.code)
		}

		cancelled, err := c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
			Status: ptr("CANCELLED")})
		must(t, err)
		if cancelled.HttpStatusCode != http.StatusNoContent {
			t.Fatalf("cancel answered %d", cancelled.HttpStatusCode)
		}
		if got := job(t, sid)["status"]; got != "CANCELLED" {
			t.Fatalf("status after cancel: %v", got)
		}
		_, err = c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
			ExecuteAt: ptr(stamp(later.Add(time.Hour)))})
		serviceError(t, err, 400, "DMS.00400026")

		gone, err := c.DeleteScheduledTask(&model.DeleteScheduledTaskRequest{InstanceId: iid, TaskId: sid})
		must(t, err)
		if gone.HttpStatusCode != http.StatusNoContent || len(rec.last(t).RespBody) != 0 {
			t.Fatalf("DeleteScheduledTask answered %d %q", gone.HttpStatusCode, rec.last(t).RespBody)
		}
		if j := job(t, sid); j != nil {
			t.Fatalf("the deleted scheduled task is still listed: %v", j)
		}
		_, err = c.DeleteScheduledTask(&model.DeleteScheduledTaskRequest{InstanceId: iid, TaskId: sid})
		serviceError(t, err, 404, "DMS.00404070")
		_, err = c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
			Status: ptr("CANCELLED")})
		serviceError(t, err, 404, "DMS.00404070")
	})

	t.Run("runs when its time comes, then is a finished background task", func(t *testing.T) {
		sid := schedule(t, time.Now().Add(time.Hour))
		_, err := c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
			ExecuteAt: ptr(stamp(time.Now().Add(2 * time.Second)))})
		must(t, err)
		finish(t, c, iid, sid)
		shown, err := c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: iid, TaskId: sid})
		must(t, err)
		if task := deref(shown.Tasks)[0]; deref(task.Name) != "kafkaPartitionReassign" {
			t.Fatalf("the task that ran: %v", task)
		}
		if got := job(t, sid)["status"]; got != "SUCCESS" {
			t.Fatalf("the scheduled list says %v", got)
		}
		_, err = c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
			Status: ptr("CANCELLED")})
		serviceError(t, err, 400, "DMS.00400026")
		gone, err := c.DeleteScheduledTask(&model.DeleteScheduledTaskRequest{InstanceId: iid, TaskId: sid})
		must(t, err)
		if gone.HttpStatusCode != http.StatusNoContent || job(t, sid) != nil {
			t.Fatalf("deleting the finished scheduled task: %d", gone.HttpStatusCode)
		}
	})

	t.Run("the list pages with start and limit sent as strings, and filters by time", func(t *testing.T) {
		var made []string
		for range 3 {
			sid := schedule(t, time.Now().Add(time.Hour))
			made = append(made, sid)
			_, err := c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: sid,
				Status: ptr("CANCELLED")})
			must(t, err)
		}
		all, err := c.ListScheduledTasks(&model.ListScheduledTasksRequest{InstanceId: iid, Limit: ptr("100")})
		must(t, err)
		total := int(deref(all.JobCount))
		if total != len(jobsOf(all)) || total < 3 {
			t.Fatalf("job_count %d for %d jobs", total, len(jobsOf(all)))
		}
		var seen []string
		for start := 1; start <= total; start += 2 {
			page, err := c.ListScheduledTasks(&model.ListScheduledTasksRequest{InstanceId: iid,
				Start: ptr(itoa(start)), Limit: ptr("2")})
			must(t, err)
			if len(jobsOf(page)) > 2 || int(deref(page.JobCount)) != total {
				t.Fatalf("page at %d: %v", start, page)
			}
			for _, j := range jobsOf(page) {
				seen = append(seen, deref(j.Id))
			}
		}
		if !slices.Equal(seen, jobIDs(jobsOf(all))) {
			t.Fatalf("pages %v, whole list %v", seen, jobIDs(jobsOf(all)))
		}
		for _, sid := range made {
			if !slices.Contains(seen, sid) {
				t.Fatalf("%s is not listed: %v", sid, seen)
			}
		}

		future, err := c.ListScheduledTasks(&model.ListScheduledTasksRequest{InstanceId: iid,
			BeginTime: ptr(stamp(time.Now().Add(24 * time.Hour)))})
		must(t, err)
		if deref(future.JobCount) != 0 || len(jobsOf(future)) != 0 {
			t.Fatalf("begin_time tomorrow: %v", future)
		}
		_, err = c.ListScheduledTasks(&model.ListScheduledTasksRequest{InstanceId: iid, Limit: ptr("ten")})
		serviceError(t, err, 400, "DMS.00400062")
		_, err = c.ListScheduledTasks(&model.ListScheduledTasksRequest{InstanceId: iid, BeginTime: ptr("soon")})
		serviceError(t, err, 400, "DMS.00400142")
	})
}

func jobIDs(jobs []model.ScheduledTaskEntity) []string {
	out := make([]string, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, deref(j.Id))
	}
	return out
}
