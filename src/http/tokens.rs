//! `POST /v3/auth/tokens`: an IAM-shaped token request, authenticated with AK/SK (never with a
//! token), answered with the token in `X-Subject-Token`.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::routes;

use super::AppState;
use super::auth_layer::ClientAddress;
use super::error::{ApiError, current_request_id};
use super::extract::{Caller, JsonBody};
use super::routes::{Op, op};
use crate::auth::{self, Reason};
use crate::domain::time::iso_ms;
use crate::domain::{Action, AuthMethod, ProjectId};
use crate::wire::token::{IdOnly, RoleName, TokenBody, TokenClaims, TokenCreated, TokenUser};

pub fn operations() -> Vec<Op> {
    vec![op(routes!(create)).audit(Action::CreateToken)]
}

/// `POST /v3/auth/tokens`. Only a request signed with the secret key gets a token: a token that
/// could mint its successor would never expire.
#[utoipa::path(
    post,
    path = "/v3/auth/tokens",
    operation_id = "CreateToken",
    tag = "Tokens",
    security(("aksk" = [])),
    request_body = TokenBody,
    responses((
        status = 201,
        description = "A token for the caller's access key; a request made with a token is refused (401)",
        body = TokenCreated,
        headers(("X-Subject-Token" = String, description = "The token, for `X-Auth-Token`")),
    )),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    client: Option<Extension<ClientAddress>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    if caller.0.method != AuthMethod::AkSk {
        let client = client.and_then(|Extension(ClientAddress(c))| c);
        auth::record_failure(Reason::TokenForToken, caller.0.access_key.as_deref(), client, &current_request_id());
        return Err(ApiError::Unauthenticated(
            "a token cannot be used to request a token; sign the request with AK/SK".into(),
        ));
    }
    let request: TokenBody = crate::wire::from_value(body)?;
    let project: ProjectId = request.auth.scope.project.id.parse().map_err(|_| ApiError::InvalidProjectId)?;
    caller.own_project(&project)?;
    let who = caller.require(Action::CreateToken)?;
    let Some(ak) = who.access_key.clone() else {
        return Err(ApiError::Unauthenticated("a token is issued only to a request signed with AK/SK".into()));
    };
    let (token, claims) = state.auth.issue_token(&ak).await?;
    let body = TokenCreated {
        token: TokenClaims {
            expires_at: iso_ms(claims.expires_at),
            issued_at: iso_ms(claims.issued_at),
            methods: vec!["hw_ak_sk".to_owned()],
            project: IdOnly { id: claims.project_id },
            roles: vec![RoleName { name: who.role.as_str().to_owned() }],
            user: TokenUser { id: who.user_id.clone(), name: who.user_name.clone() },
        },
    };
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    let value = HeaderValue::from_str(&token).map_err(|e| ApiError::Internal(e.to_string()))?;
    res.headers_mut().insert("x-subject-token", value);
    Ok(res)
}
