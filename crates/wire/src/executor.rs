//! Executors on the wire: what ShowTaskRun answers (how a task ran), and what a webhook
//! executor's receiver sends back (ReportTaskExecutorStep's body).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::RequestBody;

/// A webhook receiver's callback. Each field is checked by the handler, which names it when it
/// is wrong.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CallbackBody {
    /// The attempt's one-time token, from the webhook's `callback.token` (64 hex characters).
    #[schema(required = true, value_type = String)]
    pub token: Option<String>,
    /// `progress` (the step goes on), `success` or `failure` (the step ends; the token is spent).
    #[schema(required = true, value_type = String, example = "success")]
    pub result: Option<String>,
    /// The step's own progress, 0 to 100.
    #[schema(value_type = Option<u32>, maximum = 100)]
    pub progress: Option<u64>,
    /// At most 512 bytes.
    pub message: Option<String>,
    /// Why the step failed (`failure` only; at most 1024 bytes).
    pub reason: Option<String>,
}

impl RequestBody for CallbackBody {
    const FIELDS: &'static [&'static str] = &["token", "result", "progress", "message", "reason"];
}

/// How a task ran: what its executor reported, and why it failed if it did (ShowTaskRun).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunJson {
    /// The attempt at that step: 1, one more each time it was begun again; 0 when no executor ran.
    pub attempt: u32,
    /// The failed step with what was wrong and what to do; `null` unless the task failed. Tasks
    /// that failed before this field existed have none.
    pub failure: Option<FailureJson>,
    pub message: String,
    /// The last 4 KiB of the executor's output (stdout and stderr).
    pub output_tail: String,
    /// The step's own progress (0 to 100) as last reported.
    pub progress: Option<u32>,
    /// Why the task failed (the executor's reason, or the simulation's or start check's when no
    /// executor ran it); `null` while it has not failed.
    pub reason: Option<String>,
    /// The step the executor runs or ran last (its name), empty when no executor ran the task.
    pub step: String,
    pub task_id: String,
    /// Epoch milliseconds of the last report.
    pub updated_at: i64,
}

/// Why a task failed: the step, what was wrong, what to do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailureJson {
    /// What was wrong: the simulation's, the executor's or the start check's own words.
    pub reason: String,
    /// What to do about it.
    pub remedy: String,
    /// The step that failed (its name) and its index in the step list (0-based).
    pub step: String,
    pub step_index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_serialise_with_sorted_keys() {
        let failure = FailureJson { reason: "r".into(), remedy: "m".into(), step: "s".into(), step_index: 1 };
        let run = RunJson {
            attempt: 1,
            failure: Some(failure),
            message: "m".into(),
            output_tail: "o".into(),
            progress: Some(50),
            reason: Some("r".into()),
            step: "s".into(),
            task_id: "t".into(),
            updated_at: 1,
        };
        assert!(crate::tests::sorted(&run));
    }
}
