//! The credential file: a new access key as `credentials create` prints it and `configure
//! --from` reads it (the server writes it, the CLI reads it).

use kafka_tasks_domain::Role;

/// A new credential as `credentials create` prints it; the only time the secret is shown.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IssuedCredential {
    pub access_key: String,
    pub secret_key: String,
    pub project_id: String,
    pub user_id: String,
    pub user_name: String,
    pub role: Role,
}
