//! Retention policies on the wire (an extension): what ShowTaskRetention, UpdateTaskRetention
//! and ResetTaskRetention answer. The policy itself is the domain's
//! ([`kafka_tasks_domain::retention::RetentionPolicy`]), which is also the request body.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use kafka_tasks_domain::retention::RetentionPolicy;

/// Where a project's policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The server's configuration (`serve --retention-*`).
    Default,
    /// Set for this project through this endpoint.
    Project,
}

/// The policy in force for a project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetentionAnswer {
    pub policy: RetentionPolicy,
    pub project_id: String,
    pub source: Source,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_serialise_with_sorted_keys() {
        let policy = RetentionPolicy {
            max_age_days: Some(30),
            max_tasks_per_instance: Some(100),
            overrides: [("restart".to_owned(), Some(7)), ("modifyConfigs".to_owned(), None)].into(),
        };
        let answer = RetentionAnswer { policy, project_id: "p".into(), source: Source::Project };
        assert!(crate::tests::sorted(&answer));
    }
}
