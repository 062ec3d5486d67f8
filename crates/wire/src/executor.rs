//! What a webhook executor's receiver sends back: ReportTaskExecutorStep's body.

use serde::Deserialize;
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
