//! Tasks on the wire: the paging query of ListBackgroundTasks and ListScheduledTasks, the bulk
//! delete's and UpdateScheduledTask's queries, and the task lists, progress and bulk-delete
//! answers.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::RequestBody;
use kafka_tasks_domain::StepStatus;
use kafka_tasks_domain::task::{Step, TaskJson};

/// Paging and the creation-time range of ListBackgroundTasks and ListScheduledTasks, as given
/// (each value is checked by the handler, which names the parameter DMS names).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based index of the first task (0 also means the first); not with `offset`.
    #[param(value_type = Option<u64>, minimum = 0)]
    pub start: Option<String>,
    /// The same as `start` (the name the Terraform provider sends); not with `start`.
    #[param(value_type = Option<u64>, minimum = 0)]
    pub offset: Option<String>,
    /// Tasks per page, 1 to 100 (default 10).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Created at or after this UTC second, `yyyyMMddHHmmss`.
    #[param(pattern = "^[0-9]{14}$", example = "20260101000000")]
    pub begin_time: Option<String>,
    /// Created at or before this UTC second, `yyyyMMddHHmmss`; not before `begin_time`.
    #[param(pattern = "^[0-9]{14}$", example = "20261231235959")]
    pub end_time: Option<String>,
}

impl RequestBody for PageQuery {
    const FIELDS: &'static [&'static str] = &["start", "offset", "limit", "begin_time", "end_time"];
}

/// The bulk delete's filter (an extension): finished background tasks created in the range.
/// Any other query key is refused.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BulkDeleteQuery {
    /// Created at or after this UTC second, `yyyyMMddHHmmss` (default: the beginning of time).
    #[param(pattern = "^[0-9]{14}$", example = "20260101000000")]
    pub begin_time: Option<String>,
    /// Created at or before this UTC second, `yyyyMMddHHmmss` (required).
    #[param(required = true, value_type = String, pattern = "^[0-9]{14}$", example = "20261231235959")]
    pub end_time: Option<String>,
    /// `SUCCESS`, `FAILED`, `CANCELLED`, or several comma-separated (default: all three).
    #[param(pattern = "^(SUCCESS|FAILED|CANCELLED)(,(SUCCESS|FAILED|CANCELLED))*$", example = "FAILED,CANCELLED")]
    pub status: Option<String>,
    /// Only tasks of this name (1-64 letters, digits, `_`, `-`, `.`).
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "restartInstance")]
    pub name: Option<String>,
    /// `true`: remove nothing; answer how many records the same filter matches now and
    /// the oldest 100 of them (`BulkDeletePreview`). `false` is the same as leaving it out.
    #[param(pattern = "^(true|false)$", example = "true")]
    pub dry_run: Option<String>,
}

impl BulkDeleteQuery {
    /// The query keys it takes; any other is refused by name.
    pub const KEYS: [&'static str; 5] = ["begin_time", "end_time", "status", "name", "dry_run"];

    /// A filter key's value, as [`kafka_tasks_domain::retention::BulkFilter::parse`] reads them.
    pub fn get(&self, key: &str) -> Option<String> {
        match key {
            "begin_time" => self.begin_time.clone(),
            "end_time" => self.end_time.clone(),
            "status" => self.status.clone(),
            "name" => self.name.clone(),
            _ => None,
        }
    }
}

impl RequestBody for BulkDeleteQuery {
    const FIELDS: &'static [&'static str] = &BulkDeleteQuery::KEYS;
}

/// UpdateScheduledTask's query: at least one of the two.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RescheduleQuery {
    /// The new UTC execution time, `yyyyMMddHHmmss`, in the future.
    #[param(pattern = "^[0-9]{14}$", example = "20301231235959")]
    pub execute_at: Option<String>,
    /// `CANCELLED` cancels a waiting task; `null` makes a cancelled one wait again.
    #[param(value_type = Option<ScheduleStatus>, inline)]
    pub status: Option<String>,
}

impl RequestBody for RescheduleQuery {
    const FIELDS: &'static [&'static str] = &["execute_at", "status"];
}

// What UpdateScheduledTask's `status` takes (inlined in the parameter).
#[derive(ToSchema)]
pub enum ScheduleStatus {
    #[schema(rename = "CANCELLED")]
    Cancelled,
    #[schema(rename = "null")]
    Null,
}

/// ListBackgroundTasks' and ShowBackgroundTask's body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskList<'a> {
    /// The number of matching tasks, as a string (as DMS sends it).
    #[schema(example = "1")]
    pub task_count: String,
    pub tasks: Vec<TaskJson<'a>>,
}

/// ListScheduledTasks' body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList<'a> {
    /// A number, unlike ListBackgroundTasks' `task_count`.
    pub job_count: u64,
    pub jobs: Vec<TaskJson<'a>>,
}

/// The bulk delete's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkDeleteAnswer {
    /// Records removed by this request.
    pub deleted: usize,
    /// More finished tasks match than one request removes (1000): send it again.
    pub more: bool,
}

/// A bulk delete's dry run: what the same request without `dry_run` would remove now. A
/// superset of [`BulkDeleteAnswer`] (`deleted` is 0), so a client reading either shape is right.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkDeletePreview<'a> {
    /// Always 0: nothing was removed.
    pub deleted: usize,
    /// More match than one request removes (1000).
    pub more: bool,
    /// Always `true`.
    pub dry_run: bool,
    /// Finished background tasks the filter matches now (every one, not only those listed).
    pub matched: u64,
    /// The oldest of them (at most 100), as the list shows tasks.
    pub tasks: Vec<TaskJson<'a>>,
}

/// A step as ShowBackgroundTaskProgress lists it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StepJson {
    pub name: String,
    /// Spelled `statue` on the wire, as the SDKs' attribute maps have it.
    pub statue: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub start_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub end_time: Option<i64>,
}

impl From<&Step> for StepJson {
    fn from(s: &Step) -> Self {
        StepJson { name: s.name.clone(), statue: s.status, start_time: s.start_time, end_time: s.end_time }
    }
}

/// ShowBackgroundTaskProgress's body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskProgress {
    /// 0 to 100.
    pub progress_percentage: u32,
    /// Seconds still planned.
    pub remain_time: u64,
    pub step_list: Vec<StepJson>,
}

/// Where a task event stream resumes, for clients that cannot set `Last-Event-ID`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Resume just after the event with this id (`0`: from the oldest event kept). Ids are
    /// opaque and a project's own. Without it (and without `Last-Event-ID`) the stream
    /// carries only events from now on. An id this project's streams never showed is 400
    /// DMS.00400062.
    #[param(pattern = "^(0|[0-9a-f]{32})$")]
    pub after: Option<String>,
}

impl RequestBody for EventQuery {
    const FIELDS: &'static [&'static str] = &["after"];
}

/// The SSE resume header.
#[derive(Debug, Clone, Default, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct LastEventId {
    /// As `after`, and wins over it: the id of the last event received (browsers resend it
    /// when they reconnect).
    #[param(rename = "Last-Event-ID", pattern = "^(0|[0-9a-f]{32})$")]
    pub last_event_id: Option<String>,
}
