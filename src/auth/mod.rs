//! Who is calling. Every API request proves it, the way Huawei Cloud's API gateway checks it:
//! an AK/SK signature (`SDK-HMAC-SHA256` or `SDK-HMAC-SM3`) or an `X-Auth-Token`.
//! Credentials live in the database with their secret sealed by the master key.

pub mod keys;
pub mod signature;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::http::HeaderMap;
use sha2::Digest;

use crate::domain::{Identity, ProjectId, Role};
use crate::storage::{CredentialRecord, CredentialStore, StoreError};
use keys::{MasterKey, TokenClaims};
use signature::{parse_authorization, parse_sdk_date};

/// How far `X-Sdk-Date` may be from the server's clock.
pub const MAX_CLOCK_SKEW_MS: i64 = 15 * 60 * 1000;
/// Consecutive signature failures that lock an access key …
pub const LOCK_AFTER_FAILURES: u32 = 5;
/// … for this long.
pub const LOCK_MS: i64 = 5 * 60 * 1000;
/// How long a token is valid.
pub const TOKEN_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// The message of a bad signature, an unknown key and a revoked key alike, so that a caller
/// learns nothing about which keys exist.
const SIGNATURE_FAIL: &str = "verify aksk signature fail";

/// The service's clock, which tests can move forward.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        crate::domain::now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401: the detail is shown to the caller.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: the credential is not valid for the project asked for.
    #[error("credential not valid for this project")]
    WrongProject,
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

fn unauthenticated(detail: &str) -> AuthError {
    AuthError::Unauthenticated(detail.to_owned())
}

/// The parts of a request a signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// How long a node trusts what it read of a credential (its secret, whether it is revoked or
/// locked) before reading it again. Revoking a key takes effect on every node within this time.
pub const CREDENTIAL_CACHE_MS: i64 = 1_000;

/// A credential as read, with its secret unsealed.
struct Cached {
    record: CredentialRecord,
    secret: String,
    read_at: i64,
}

pub struct Authenticator {
    store: Arc<dyn CredentialStore>,
    master: MasterKey,
    pub clock: Clock,
    /// Active credentials by access key; only keys that exist are kept, so the map is bounded
    /// by the number of credentials.
    cache: std::sync::Mutex<std::collections::HashMap<String, Arc<Cached>>>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Authenticator {
    pub fn new(store: Arc<dyn CredentialStore>, master: MasterKey, clock: Clock) -> Self {
        Authenticator { store, master, clock, cache: Default::default() }
    }

    /// An active credential and its secret, from the cache while fresh.
    async fn credential(&self, access_key: &str) -> Result<Option<Arc<Cached>>, AuthError> {
        let now = self.clock.now_ms();
        let hit = self.cache.lock().ok().and_then(|c| c.get(access_key).cloned());
        if let Some(c) = hit.filter(|c| now - c.read_at < CREDENTIAL_CACHE_MS && now >= c.read_at) {
            return Ok(Some(c));
        }
        let Some(record) = self.store.get_credential(access_key).await?.filter(|c| c.revoked_at.is_none()) else {
            self.forget(access_key);
            return Ok(None);
        };
        let secret = self
            .master
            .open(&record.secret_sealed)
            .map_err(|e| AuthError::Internal(format!("credential {}: {e}", record.access_key)))?;
        let cached = Arc::new(Cached { record, secret, read_at: now });
        if let Ok(mut c) = self.cache.lock() {
            c.insert(access_key.to_owned(), cached.clone());
        }
        Ok(Some(cached))
    }

    fn forget(&self, access_key: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(access_key);
        }
    }

    pub async fn authenticate(&self, req: &SignedRequest<'_>) -> Result<Identity, AuthError> {
        let identity = if let Some(auth) = req.headers.get(axum::http::header::AUTHORIZATION) {
            let auth = auth.to_str().map_err(|_| unauthenticated("the Authorization header is malformed"))?;
            self.verify_signature(auth, req).await?
        } else if let Some(token) = header(req.headers, "x-auth-token") {
            self.verify_token(token).await?
        } else {
            return Err(unauthenticated("x-auth-token not found"));
        };
        if let Some(p) = header(req.headers, "x-project-id")
            && p != identity.project_id.as_str()
        {
            return Err(AuthError::WrongProject);
        }
        Ok(identity)
    }

    async fn verify_signature(&self, auth: &str, req: &SignedRequest<'_>) -> Result<Identity, AuthError> {
        let parsed =
            parse_authorization(auth).ok_or_else(|| unauthenticated("the Authorization header is malformed"))?;
        if !parsed.signed_headers.contains(&"x-sdk-date") {
            return Err(unauthenticated("x-sdk-date must be among the signed headers"));
        }
        let date = header(req.headers, "x-sdk-date").ok_or_else(|| unauthenticated("x-sdk-date not found"))?;
        let signed_at = parse_sdk_date(date).ok_or_else(|| unauthenticated("x-sdk-date is malformed"))?;
        let now = self.clock.now_ms();
        if (now - signed_at).abs() > MAX_CLOCK_SKEW_MS {
            return Err(unauthenticated(
                "the request has expired: X-Sdk-Date must be within 15 minutes of the server's time",
            ));
        }
        let Some(cached) = self.credential(parsed.access_key).await? else {
            return Err(unauthenticated(SIGNATURE_FAIL));
        };
        let cred = &cached.record;
        if cred.locked_until.is_some_and(|t| t > now) {
            return Err(unauthenticated("the access key is locked for 5 minutes after repeated signature failures"));
        }
        let secret = &cached.secret;

        let alg = parsed.algorithm;
        let empty = alg.hash_hex(b"");
        let declared = header(req.headers, alg.content_header()).filter(|v| !v.is_empty());
        // The Python SDK hashes an empty body as empty even when it sends a content-hash header;
        // the Go SDK uses the header whenever it is there. Accept either canonical form.
        let mut payloads: Vec<String> = Vec::with_capacity(2);
        match (req.body.is_empty(), declared) {
            (true, Some(d)) => payloads.extend([d.to_owned(), empty]),
            (true, None) => payloads.push(empty),
            (false, Some(d)) => payloads.push(d.to_owned()),
            (false, None) => payloads.push(alg.hash_hex(req.body)),
        }
        let valid = payloads.iter().any(|payload| {
            let canonical = signature::canonical_request(
                req.method,
                req.path,
                req.query,
                &parsed.signed_headers,
                |name| header(req.headers, name),
                payload,
            );
            let sts = signature::string_to_sign(alg, date, &canonical);
            alg.verify(secret.as_bytes(), sts.as_bytes(), parsed.signature)
        });
        if !valid {
            self.store.record_auth_failure(&cred.access_key, LOCK_AFTER_FAILURES, now + LOCK_MS).await?;
            // The count (and maybe a lock) changed: read it afresh next time.
            self.forget(&cred.access_key);
            return Err(unauthenticated(SIGNATURE_FAIL));
        }
        if cred.failed_attempts > 0 {
            self.store.clear_auth_failures(&cred.access_key).await?;
            self.forget(&cred.access_key);
        }
        Ok(identity_of(cred))
    }

    async fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self.master.read_token(token).ok_or_else(|| unauthenticated("the token is invalid"))?;
        if claims.expires_at <= self.clock.now_ms() {
            return Err(unauthenticated("token expires"));
        }
        match self.credential(&claims.ak).await? {
            Some(c) if c.record.project_id.as_str() == claims.project_id => Ok(identity_of(&c.record)),
            _ => Err(unauthenticated("the token is invalid")),
        }
    }

    /// A token for an active credential, valid for 24 hours.
    pub async fn issue_token(&self, access_key: &str) -> Result<(String, TokenClaims), AuthError> {
        issue_token(self.store.as_ref(), &self.master, access_key, self.clock.now_ms()).await
    }
}

fn identity_of(c: &CredentialRecord) -> Identity {
    Identity {
        project_id: c.project_id.clone(),
        user_id: c.user_id.clone(),
        user_name: c.user_name.clone(),
        access_key: Some(c.access_key.clone()),
        role: c.role,
    }
}

pub async fn issue_token(
    store: &dyn CredentialStore,
    master: &MasterKey,
    access_key: &str,
    now: i64,
) -> Result<(String, TokenClaims), AuthError> {
    match store.get_credential(access_key).await? {
        Some(c) if c.revoked_at.is_none() => {
            let claims = TokenClaims {
                ak: c.access_key,
                project_id: c.project_id.as_str().to_owned(),
                issued_at: now,
                expires_at: now + TOKEN_TTL_MS,
            };
            Ok((master.mint_token(&claims), claims))
        }
        _ => Err(unauthenticated("no such active access key")),
    }
}

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

/// A user's id is derived from the project and user name, so that one user's keys share it.
pub fn user_id(project: &ProjectId, user_name: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{project}:{user_name}").as_bytes());
    hex::encode(&digest[..16])
}

/// Makes a new access key. With `only_if_none`, only when the database has no credential at all
/// (returns `None` when it had one).
pub async fn create_credential(
    store: &dyn CredentialStore,
    master: &MasterKey,
    project: &ProjectId,
    user_name: &str,
    role: Role,
    now: i64,
    only_if_none: bool,
) -> Result<Option<IssuedCredential>, StoreError> {
    let issued = IssuedCredential {
        access_key: keys::new_access_key(),
        secret_key: keys::new_secret_key(),
        project_id: project.as_str().to_owned(),
        user_id: user_id(project, user_name),
        user_name: user_name.to_owned(),
        role,
    };
    let record = CredentialRecord {
        access_key: issued.access_key.clone(),
        secret_sealed: master.seal(&issued.secret_key),
        project_id: project.clone(),
        user_id: issued.user_id.clone(),
        user_name: issued.user_name.clone(),
        role,
        created_at: now,
        revoked_at: None,
        failed_attempts: 0,
        locked_until: None,
    };
    if only_if_none {
        let inserted = store.insert_first_credential(record).await?;
        return Ok(inserted.then_some(issued));
    }
    store.insert_credential(record).await?;
    Ok(Some(issued))
}
