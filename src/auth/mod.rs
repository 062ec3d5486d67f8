//! Who is calling. Every request is handled for an [`Identity`]; this module decides which.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use crate::domain::{Identity, ProjectId, Role};

/// Why a request could not be authenticated; the text is the detail a 401 shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthFailure(pub String);

/// Where identities come from.
pub enum Authenticator {
    /// No authentication: every request acts as one configured user, in the project its path names.
    Open {
        user_id: String,
        user_name: String,
        default_project: ProjectId,
    },
}

impl Authenticator {
    pub async fn authenticate(&self, parts: &mut Parts) -> Result<Identity, AuthFailure> {
        match self {
            Authenticator::Open {
                user_id,
                user_name,
                default_project,
            } => {
                let project = match RawPathParams::from_request_parts(parts, &()).await {
                    Ok(raw) => raw
                        .iter()
                        .find(|(k, _)| *k == "project_id")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or_else(|| default_project.clone()),
                    Err(_) => default_project.clone(),
                };
                Ok(Identity {
                    project_id: project,
                    user_id: user_id.clone(),
                    user_name: user_name.clone(),
                    access_key: None,
                    role: Role::Admin,
                })
            }
        }
    }
}
