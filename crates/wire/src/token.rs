//! `POST /v3/auth/tokens` on the wire: an IAM-shaped request, of which only the project scope
//! is read, and the token's claims (the token itself travels in `X-Subject-Token`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::RequestBody;

/// The token request: `{"auth": {"scope": {"project": {"id"}}}}` (anything else is not read).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenBody {
    #[schema(inline)]
    pub auth: TokenAuth,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenAuth {
    #[schema(inline)]
    pub scope: TokenScope,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenScope {
    #[schema(inline)]
    pub project: IdOnly,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdOnly {
    pub id: String,
}

impl RequestBody for TokenBody {
    /// Any fault of the request is a bad body, as IAM answers it.
    const FIELDS: &'static [&'static str] = &[];
}

/// The token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    #[schema(inline)]
    pub token: TokenClaims,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenClaims {
    pub expires_at: String,
    pub issued_at: String,
    /// `["hw_ak_sk"]`.
    pub methods: Vec<String>,
    #[schema(inline)]
    pub project: IdOnly,
    #[schema(inline)]
    pub roles: Vec<RoleName>,
    #[schema(inline)]
    pub user: TokenUser,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenUser {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleName {
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claims_serialise_with_sorted_keys() {
        let s = |v: &str| v.to_owned();
        let claims = TokenClaims {
            expires_at: s("b"),
            issued_at: s("a"),
            methods: vec![s("hw_ak_sk")],
            project: IdOnly { id: s("p") },
            roles: vec![RoleName { name: s("admin") }],
            user: TokenUser { id: s("u"), name: s("n") },
        };
        assert!(crate::tests::sorted(&TokenCreated { token: claims }));
    }
}
