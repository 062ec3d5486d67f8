//! Who is calling. Every API request proves it, the way Huawei Cloud's API gateway checks it:
//! an AK/SK signature (`SDK-HMAC-SHA256`, `SDK-HMAC-SM3`, `SDK-ECDSA-P256-SHA256`, `SDK-SM2-SM3`
//! or `V11-HMAC-SHA256`) or an `X-Auth-Token`.
//! Credentials live in the database with their secret sealed by the master key.
//!
//! Authentication runs in two steps so that nothing a stranger sends is buffered before the
//! cheap checks: [`Authenticator::precheck`] decides what the headers alone can (format, date
//! window, a known active key, the key's rate), then the body is read and
//! [`Authenticator::finish`] verifies the signature over exactly the bytes the handler reads.

pub mod client_addr;
pub mod config;
pub mod keys;
pub mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use sha2::Digest;

pub use crate::domain::clock::Clock;
use crate::domain::{AuthMethod, Identity, ProjectId, Role};
use crate::storage::{CredentialRecord, CredentialStore, StoreError};
/// Request signatures and derived keys are part of the wire contract (the CLI signs with them too).
pub use crate::wire::credential::IssuedCredential;
pub use crate::wire::{derived, signature};
use config::AuthArgs;
use keys::{MasterKey, TokenClaims};
use signature::{Algorithm, PayloadError, parse_authorization, parse_sdk_date};
use throttle::{FailureThrottle, KeyRateLimiter, UnverifiedBodies};

/// How far `X-Sdk-Date` may be from the server's clock.
pub const MAX_CLOCK_SKEW_MS: i64 = 15 * 60 * 1000;
/// How long a token is valid.
pub const TOKEN_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Access keys are 20 characters; a longer one is unknown without asking the database.
const MAX_ACCESS_KEY_LEN: usize = 64;

/// The message of a bad signature, an unknown key and a revoked key alike, so that a caller
/// learns nothing about which keys exist.
const SIGNATURE_FAIL: &str = "verify aksk signature fail";

/// Why a request was refused: the label of `kafka_tasks_auth_failures_total` and of the
/// security log line. A fixed set, so the metric's cardinality is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MissingCredentials,
    MalformedAuthorization,
    BadDate,
    ExpiredDate,
    UnknownKey,
    BadSignature,
    PayloadHashMismatch,
    UnsignedPayload,
    BadToken,
    ExpiredToken,
    WrongProject,
    TokenForToken,
    /// A V11 credential scope for another region or service, or another date than X-Sdk-Date's.
    WrongScope,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingCredentials => "missing_credentials",
            Reason::MalformedAuthorization => "malformed_authorization",
            Reason::BadDate => "bad_date",
            Reason::ExpiredDate => "expired_date",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::PayloadHashMismatch => "payload_hash_mismatch",
            Reason::UnsignedPayload => "unsigned_payload",
            Reason::BadToken => "bad_token",
            Reason::ExpiredToken => "expired_token",
            Reason::WrongProject => "wrong_project",
            Reason::TokenForToken => "token_for_token",
            Reason::WrongScope => "wrong_scope",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// 401: the detail is shown to the caller.
    #[error("{1}")]
    Unauthenticated(Reason, String),
    /// 403: the credential is not valid for the project asked for.
    #[error("credential not valid for this project")]
    WrongProject,
    /// 429: a failed signature from a client past its limit of failures (seconds to wait).
    #[error("too many failed signatures")]
    FailuresThrottled(Reason, u64),
    /// 429: the access key's rate limit (seconds to wait).
    #[error("the access key's rate limit is reached")]
    RateLimited(u64),
    /// 429: the client already has its share of bodies being read unverified.
    #[error("too many unverified bodies from this client")]
    BodiesThrottled,
    /// The credential store failed (an outage answers 503, anything else 500).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    /// The failure's reason, for the security log; `None` for what is no authentication failure.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            AuthError::Unauthenticated(r, _) | AuthError::FailuresThrottled(r, _) => Some(*r),
            AuthError::WrongProject => Some(Reason::WrongProject),
            AuthError::RateLimited(_) | AuthError::BodiesThrottled | AuthError::Store(_) | AuthError::Internal(_) => {
                None
            }
        }
    }

    /// The label of `kafka_tasks_rate_limited_total`, for refusals that are throttling.
    pub fn throttle_reason(&self) -> Option<&'static str> {
        match self {
            AuthError::FailuresThrottled(..) => Some("auth_failures"),
            AuthError::RateLimited(_) => Some("per_key"),
            AuthError::BodiesThrottled => Some("unverified_bodies"),
            _ => None,
        }
    }
}

fn unauthenticated(reason: Reason, detail: &str) -> AuthError {
    AuthError::Unauthenticated(reason, detail.to_owned())
}

/// Writes the security log line and counts an authentication failure. Never logs a secret, a
/// signature or a token; `access_key` is what the caller claimed (sanitised).
pub fn record_failure(reason: Reason, access_key: Option<&str>, client: Option<IpAddr>, request_id: &str) {
    metrics::counter!("kafka_tasks_auth_failures_total", "reason" => reason.as_str()).increment(1);
    let client = client.map(|c| c.to_string()).unwrap_or_else(|| "unknown".into());
    // One line per reason and client per second at most (with the count of those dropped), so
    // that a flood of bad requests cannot flood the log.
    let Some(suppressed) = crate::log_limit::global().allow(&format!("security {} {client}", reason.as_str())) else {
        return;
    };
    tracing::warn!(
        target: "security",
        suppressed,
        access_key = access_key.unwrap_or(""),
        reason = reason.as_str(),
        client = %client,
        request_id,
        "authentication failed"
    );
}

/// Counts a request refused by a throttle or rate limit.
pub fn record_throttled(reason: &'static str) {
    metrics::counter!("kafka_tasks_rate_limited_total", "reason" => reason).increment(1);
}

/// The parts of a request a signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// How long a node trusts what it read of a credential (its secret, whether it is revoked)
/// before reading it again. Revoking a key takes effect on every node within this time; a key
/// just created may be unknown for as long.
pub const CREDENTIAL_CACHE_MS: i64 = 1_000;
/// Unknown access keys remembered at most (the memory is dropped whole when full).
const UNKNOWN_CACHE_CAP: usize = 4_096;

/// A credential as read, with its secret unsealed.
struct Cached {
    record: CredentialRecord,
    secret: String,
    read_at: i64,
    /// Its derived public keys, kept across re-reads while the secret is the same.
    keys: Arc<DerivedKeys>,
}

/// The public keys of `SDK-ECDSA-P256-SHA256` and `SDK-SM2-SM3` for one credential, each
/// derived on its first verified use. Deriving costs a hundred HMAC-and-scalar-multiplication
/// times a signature check; it happens only for a known active key whose signature parses, and
/// once per key (see docs/decisions.md, "Signing modes and derived keys").
#[derive(Default)]
struct DerivedKeys {
    p256: std::sync::OnceLock<Option<derived::PublicKey>>,
    sm2: std::sync::OnceLock<Option<derived::PublicKey>>,
}

/// What the headers alone established; [`Authenticator::finish`] completes it with the body.
pub enum Checked {
    /// A valid token: nothing it proves depends on the body.
    Token(Identity),
    /// A well-formed, current signature by a known active key, not yet verified.
    Signed(Pending),
}

pub struct Pending {
    algorithm: Algorithm,
    signed_headers: Vec<String>,
    signature: String,
    date: String,
    /// V11's credential scope, already checked against the date, region and service.
    scope: Option<String>,
    cred: Arc<Cached>,
}

pub struct Authenticator {
    store: Arc<dyn CredentialStore>,
    master: MasterKey,
    pub clock: Clock,
    /// Active credentials by access key; only keys that exist are kept, so the map is bounded
    /// by the number of credentials.
    cache: std::sync::Mutex<HashMap<String, Arc<Cached>>>,
    /// Access keys recently found not to exist (or revoked), and when.
    unknown: std::sync::Mutex<HashMap<String, i64>>,
    args: AuthArgs,
    failures: FailureThrottle,
    rate: Option<KeyRateLimiter>,
    unverified: UnverifiedBodies,
    /// Key pairs derived (for the tests and the instruction-count guard).
    derivations: std::sync::atomic::AtomicU64,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An access key as it may appear in a log line: short and plain, else nothing.
fn loggable(ak: &str) -> Option<String> {
    (ak.len() <= MAX_ACCESS_KEY_LEN && !ak.is_empty() && ak.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| ak.to_owned())
}

impl Authenticator {
    pub fn new(store: Arc<dyn CredentialStore>, master: MasterKey, clock: Clock) -> Self {
        Self::with_args(store, master, clock, &AuthArgs::default())
    }

    pub fn with_args(store: Arc<dyn CredentialStore>, master: MasterKey, clock: Clock, args: &AuthArgs) -> Self {
        let window_ms = i64::try_from(args.auth_failure_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Authenticator {
            store,
            master,
            clock,
            cache: Default::default(),
            unknown: Default::default(),
            failures: FailureThrottle::new(args.auth_failure_limit, window_ms),
            rate: KeyRateLimiter::new(args.rate_limit_per_key, args.rate_limit_burst),
            unverified: UnverifiedBodies::new(args.max_unverified_bodies_per_client),
            derivations: Default::default(),
            args: args.clone(),
        }
    }

    /// A slot for reading a signed request's body before its signature is verified: `None`
    /// when `client` already has `--max-unverified-bodies-per-client` bodies being read.
    pub fn unverified_body(&self, client: Option<IpAddr>) -> Option<throttle::BodySlot> {
        self.unverified.begin(client)
    }

    /// The master key, for what else it seals (a cluster binding's password).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The key of the event ids `project`'s streams show.
    pub fn event_id_key(&self, project: &str) -> [u8; 16] {
        self.master.event_id_key(project)
    }

    /// The client's address given the TCP peer's, honouring `--trusted-proxies`.
    pub fn client_address(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        client_addr::client_address(peer, headers, &self.args.trusted_proxies)
    }

    /// The access key a request claims (from its `Authorization` or its token), for the log.
    pub fn claimed_access_key(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(auth) = header(headers, "authorization") {
            return parse_authorization(auth).and_then(|a| loggable(a.access_key));
        }
        let claims = self.master.read_token(header(headers, "x-auth-token")?)?;
        loggable(&claims.ak)
    }

    /// An active credential and its secret, from the cache while fresh.
    async fn credential(&self, access_key: &str) -> Result<Option<Arc<Cached>>, AuthError> {
        let now = self.clock.now_ms();
        let fresh = |at: i64| now - at < CREDENTIAL_CACHE_MS && now >= at;
        let hit = self.cache.lock().ok().and_then(|c| c.get(access_key).cloned());
        if let Some(c) = hit.as_ref().filter(|c| fresh(c.read_at)) {
            return Ok(Some(c.clone()));
        }
        if access_key.len() > MAX_ACCESS_KEY_LEN
            || self.unknown.lock().ok().and_then(|u| u.get(access_key).copied()).is_some_and(fresh)
        {
            return Ok(None);
        }
        let Some(record) = self.store.get_credential(access_key).await?.filter(|c| c.revoked_at.is_none()) else {
            self.forget(access_key);
            if let Ok(mut u) = self.unknown.lock() {
                if u.len() >= UNKNOWN_CACHE_CAP {
                    u.clear();
                }
                u.insert(access_key.to_owned(), now);
            }
            return Ok(None);
        };
        let secret = self
            .master
            .open(&record.secret_sealed)
            .map_err(|e| AuthError::Internal(format!("credential {}: {e}", record.access_key)))?;
        // A re-read of the same secret keeps the keys derived from it; another secret (or a key
        // revoked and forgotten in between) starts afresh.
        let keys = hit.filter(|old| old.secret == secret).map(|old| old.keys.clone()).unwrap_or_default();
        let cached = Arc::new(Cached { record, secret, read_at: now, keys });
        if let Ok(mut c) = self.cache.lock() {
            c.insert(access_key.to_owned(), cached.clone());
        }
        Ok(Some(cached))
    }

    /// Drops every cached credential, so that each is read again: after test control removed
    /// credentials behind the cache's back.
    pub fn forget_all(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
        if let Ok(mut u) = self.unknown.lock() {
            u.clear();
        }
    }

    fn forget(&self, access_key: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(access_key);
        }
    }

    /// Both steps at once, for callers that already hold the body.
    pub async fn authenticate(&self, req: &SignedRequest<'_>, client: Option<IpAddr>) -> Result<Identity, AuthError> {
        let checked = self.precheck(req.headers).await?;
        self.finish(checked, req, client).await
    }

    /// Everything decided from the headers alone, before the body is read: the credential's
    /// format, the date window, that the access key exists and is active, and its rate limit.
    /// A token is checked completely here.
    pub async fn precheck(&self, headers: &HeaderMap) -> Result<Checked, AuthError> {
        if let Some(auth) = headers.get(axum::http::header::AUTHORIZATION) {
            let malformed = || unauthenticated(Reason::MalformedAuthorization, "the Authorization header is malformed");
            let auth = auth.to_str().map_err(|_| malformed())?;
            let parsed = parse_authorization(auth).ok_or_else(malformed)?;
            if !parsed.signed_headers.contains(&"x-sdk-date") {
                return Err(unauthenticated(Reason::BadDate, "x-sdk-date must be among the signed headers"));
            }
            let date = header(headers, "x-sdk-date")
                .ok_or_else(|| unauthenticated(Reason::BadDate, "x-sdk-date not found"))?;
            let signed_at =
                parse_sdk_date(date).ok_or_else(|| unauthenticated(Reason::BadDate, "x-sdk-date is malformed"))?;
            let now = self.clock.now_ms();
            // Near the service's clock, or near the wall clock when a test moved the service's
            // (test control): a client's signing clock is the wall clock, and moving time forward
            // must not lock every client out. Unmoved, both are the same.
            let near = |t: i64| (t - signed_at).abs() <= MAX_CLOCK_SKEW_MS;
            if !near(now) && !near(crate::domain::now_ms()) {
                return Err(unauthenticated(
                    Reason::ExpiredDate,
                    "the request has expired: X-Sdk-Date must be within 15 minutes of the server's time",
                ));
            }
            let scope = match parsed.scope {
                Some(scope) => Some(self.check_scope(&scope, date)?),
                None => None,
            };
            let Some(cred) = self.credential(parsed.access_key).await? else {
                return Err(unauthenticated(Reason::UnknownKey, SIGNATURE_FAIL));
            };
            // Only the key's own authenticated requests empty its bucket, so refusing here
            // (before its body is read) cannot be caused by a stranger.
            if let Some(secs) = self.rate.as_ref().and_then(|r| r.peek(&cred.record.access_key, now)) {
                return Err(AuthError::RateLimited(secs));
            }
            Ok(Checked::Signed(Pending {
                algorithm: parsed.algorithm,
                signed_headers: parsed.signed_headers.iter().map(|h| (*h).to_owned()).collect(),
                signature: parsed.signature.to_owned(),
                date: date.to_owned(),
                scope,
                cred,
            }))
        } else if let Some(token) = header(headers, "x-auth-token") {
            let identity = self.verify_token(token).await?;
            self.admit(&identity, headers)?;
            Ok(Checked::Token(identity))
        } else {
            Err(unauthenticated(Reason::MissingCredentials, "x-auth-token not found"))
        }
    }

    /// Verifies what [`Authenticator::precheck`] could not: the signature over the body.
    pub async fn finish(
        &self,
        checked: Checked,
        req: &SignedRequest<'_>,
        client: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        let p = match checked {
            Checked::Token(identity) => return Ok(identity),
            Checked::Signed(p) => p,
        };
        let cred = &p.cred.record;
        let alg = p.algorithm;
        let declared = header(req.headers, alg.content_header()).filter(|v| !v.is_empty());
        let failed = |reason: Reason| match self.failures.fail(&cred.access_key, client, self.clock.now_ms()) {
            Some(secs) => AuthError::FailuresThrottled(reason, secs),
            None => unauthenticated(reason, SIGNATURE_FAIL),
        };
        let payloads = match signature::payload_hashes(alg, declared, req.body, self.args.allow_unsigned_payload) {
            Ok(p) => p,
            Err(PayloadError::Mismatch) => return Err(failed(Reason::PayloadHashMismatch)),
            Err(PayloadError::Unsigned) => return Err(failed(Reason::UnsignedPayload)),
        };
        let signed_headers: Vec<&str> = p.signed_headers.iter().map(String::as_str).collect();
        let parts = signature::RequestParts {
            signed_headers: &signed_headers,
            sdk_date: &p.date,
            scope: p.scope.as_deref(),
            method: req.method,
            path: req.path,
            query: req.query,
        };
        let headers = |name: &str| header(req.headers, name);
        let (ak, sk) = (cred.access_key.as_str(), p.cred.secret.as_str());
        let valid = match alg {
            Algorithm::Sha256 | Algorithm::Sm3 => {
                signature::verify_request_with(alg, &parts, headers, &payloads, |sts| {
                    alg.verify(sk.as_bytes(), sts, &p.signature)
                })
            }
            Algorithm::V11 => {
                let key = derived::v11_key(ak, sk, p.scope.as_deref().unwrap_or_default());
                signature::verify_request_with(alg, &parts, headers, &payloads, |sts| {
                    alg.verify(key.as_bytes(), sts, &p.signature)
                })
            }
            Algorithm::EcdsaP256 | Algorithm::Sm2 => {
                // The signature must parse before any key is derived.
                let (sig, slot, derive): (_, _, fn(&str, &str) -> Option<derived::PublicKey>) = match alg {
                    Algorithm::EcdsaP256 => {
                        (derived::Signature::parse_p256(&p.signature), &p.cred.keys.p256, derived::PublicKey::p256)
                    }
                    _ => (derived::Signature::parse_sm2(&p.signature), &p.cred.keys.sm2, derived::PublicKey::sm2),
                };
                let key = sig.as_ref().and_then(|_| {
                    slot.get_or_init(|| {
                        self.derivations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        derive(ak, sk)
                    })
                    .as_ref()
                });
                match (sig, key) {
                    (Some(sig), Some(key)) => {
                        signature::verify_request_with(alg, &parts, headers, &payloads, |sts| sig.verify(key, sts))
                    }
                    _ => false,
                }
            }
        };
        if !valid {
            return Err(failed(Reason::BadSignature));
        }
        let identity = identity_of(cred, AuthMethod::AkSk);
        self.admit(&identity, req.headers)?;
        Ok(identity)
    }

    /// Key pairs derived since start: one per access key and asymmetric mode while the key's
    /// secret is unchanged.
    pub fn derivations(&self) -> u64 {
        self.derivations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A V11 credential scope must be for X-Sdk-Date's day and this server's region and
    /// service; the refusal says what was expected (nothing of what was sent is echoed).
    fn check_scope(&self, scope: &signature::Scope<'_>, sdk_date: &str) -> Result<String, AuthError> {
        let (region, service) = (&self.args.signing_region, &self.args.signing_service);
        if sdk_date.get(..8) != Some(scope.date) {
            return Err(unauthenticated(
                Reason::WrongScope,
                "the V11-HMAC-SHA256 credential scope's date must be X-Sdk-Date's (YYYYMMDD)",
            ));
        }
        if scope.region != region.as_str() || scope.service != service.as_str() {
            return Err(AuthError::Unauthenticated(
                Reason::WrongScope,
                format!(
                    "the V11-HMAC-SHA256 credential scope must be DATE/{region}/{service}: this endpoint \
                     expects region {region:?} and service {service:?}"
                ),
            ));
        }
        Ok(scope.text.to_owned())
    }

    /// What an authenticated caller must still pass: `X-Project-Id`, when sent, names the
    /// key's project; the key is within its rate.
    fn admit(&self, identity: &Identity, headers: &HeaderMap) -> Result<(), AuthError> {
        if let Some(p) = header(headers, "x-project-id")
            && p != identity.project_id.as_str()
        {
            return Err(AuthError::WrongProject);
        }
        if let (Some(rate), Some(ak)) = (&self.rate, &identity.access_key) {
            rate.take(ak, self.clock.now_ms()).map_err(AuthError::RateLimited)?;
        }
        Ok(())
    }

    async fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        let invalid = || unauthenticated(Reason::BadToken, "the token is invalid");
        let claims = self.master.read_token(token).ok_or_else(invalid)?;
        if claims.expires_at <= self.clock.now_ms() {
            return Err(unauthenticated(Reason::ExpiredToken, "token expires"));
        }
        match self.credential(&claims.ak).await? {
            Some(c) if c.record.project_id.as_str() == claims.project_id => {
                Ok(identity_of(&c.record, AuthMethod::Token))
            }
            _ => Err(invalid()),
        }
    }

    /// A token for an active credential, valid for 24 hours.
    pub async fn issue_token(&self, access_key: &str) -> Result<(String, TokenClaims), AuthError> {
        issue_token(self.store.as_ref(), &self.master, access_key, self.clock.now_ms()).await
    }
}

fn identity_of(c: &CredentialRecord, method: AuthMethod) -> Identity {
    Identity {
        project_id: c.project_id.clone(),
        user_id: c.user_id.clone(),
        user_name: c.user_name.clone(),
        access_key: Some(c.access_key.clone()),
        role: c.role,
        method,
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
        _ => Err(unauthenticated(Reason::UnknownKey, "no such active access key")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failure_leaves_one_security_line_with_key_reason_client_and_request() {
        let buf = Buffer::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
        tracing::subscriber::with_default(subscriber, || {
            record_failure(Reason::BadSignature, Some("AKEXAMPLE"), "127.0.0.2".parse().ok(), "req-1");
        });
        let text = String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default()).unwrap_or_default();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
        assert_eq!(line["target"], "security", "{text}");
        assert_eq!(line["fields"]["reason"], "bad_signature", "{text}");
        assert_eq!(line["fields"]["access_key"], "AKEXAMPLE", "{text}");
        assert_eq!(line["fields"]["client"], "127.0.0.2", "{text}");
        assert_eq!(line["fields"]["request_id"], "req-1", "{text}");
    }

    #[test]
    fn only_plain_access_keys_reach_the_log() {
        assert_eq!(loggable("AKEXAMPLE0123").as_deref(), Some("AKEXAMPLE0123"));
        for bad in ["", "a b", "x\ny", "é", &"A".repeat(65)] {
            assert_eq!(loggable(bad), None, "{bad:?}");
        }
    }

    const AK: &str = "AKPROPERTYTEST000001";
    const SK: &str = "secretsecretsecretsecretsecretsecret0000";

    /// One authenticator over a real SQLite store that holds one credential, shared by every
    /// case of the property tests (with the runtime it was opened on).
    fn shared() -> &'static (tokio::runtime::Runtime, Authenticator, tempfile::TempDir) {
        static SHARED: std::sync::OnceLock<(tokio::runtime::Runtime, Authenticator, tempfile::TempDir)> =
            std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"));
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
            let master = MasterKey::from_hex(&"ab".repeat(32)).unwrap_or_else(|e| panic!("{e}"));
            let record = CredentialRecord {
                access_key: AK.into(),
                secret_sealed: master.seal(SK),
                project_id: "0123456789abcdef0123456789abcdef".parse().unwrap_or_else(|_| panic!("project")),
                user_id: "u".into(),
                user_name: "n".into(),
                role: Role::Admin,
                created_at: 0,
                revoked_at: None,
                failed_attempts: 0,
                locked_until: None,
            };
            let url = format!("sqlite:{}", dir.path().join("auth.db").display());
            let storage = rt.block_on(async {
                let storage = crate::storage::Storage::open(&url).await.unwrap_or_else(|e| panic!("open: {e}"));
                storage.credentials.insert_credential(record).await.unwrap_or_else(|e| panic!("insert: {e}"));
                storage
            });
            (rt, Authenticator::new(storage.credentials, master, Clock::default()), dir)
        })
    }

    /// Signatures made by the official Python SDK in every mode it offers
    /// (tests/sdk/make_signing_vectors.py), checked by the whole authenticator.
    mod sdk_vectors {
        use super::*;
        use axum::http::{HeaderName, HeaderValue};

        const FIXTURE: &str = include_str!("../../tests/sdk/signing_vectors.json");

        #[derive(serde::Deserialize)]
        struct Fixture {
            date: String,
            region: String,
            service: String,
            vectors: Vec<Vector>,
        }

        #[derive(serde::Deserialize, Clone)]
        struct Vector {
            mode: String,
            access_key: String,
            secret_key: String,
            method: String,
            path: String,
            query: String,
            headers: std::collections::BTreeMap<String, String>,
            body: String,
            expect: Option<String>,
        }

        fn fixture() -> Fixture {
            serde_json::from_str(FIXTURE).unwrap_or_else(|e| panic!("fixture: {e}"))
        }

        /// An authenticator whose store holds the vectors' keys (with `secret` instead of the
        /// vectors' when given), its clock at the vectors' date.
        async fn authenticator(f: &Fixture, secret: Option<&str>, dir: &tempfile::TempDir) -> Authenticator {
            let master = MasterKey::from_hex(&"cd".repeat(32)).unwrap_or_else(|e| panic!("{e}"));
            let url = format!("sqlite:{}", dir.path().join(format!("v{}.db", secret.is_some())).display());
            let storage = crate::storage::Storage::open(&url).await.unwrap_or_else(|e| panic!("open: {e}"));
            let keys: std::collections::BTreeSet<(&str, &str)> =
                f.vectors.iter().map(|v| (v.access_key.as_str(), v.secret_key.as_str())).collect();
            for (ak, sk) in keys {
                let record = CredentialRecord {
                    access_key: ak.into(),
                    secret_sealed: master.seal(secret.unwrap_or(sk)),
                    project_id: "0123456789abcdef0123456789abcdef".parse().unwrap_or_else(|_| panic!("project")),
                    user_id: "u".into(),
                    user_name: "n".into(),
                    role: Role::Admin,
                    created_at: 0,
                    revoked_at: None,
                    failed_attempts: 0,
                    locked_until: None,
                };
                storage.credentials.insert_credential(record).await.unwrap_or_else(|e| panic!("insert: {e}"));
            }
            let args = AuthArgs {
                auth_failure_limit: 1_000_000,
                signing_region: f.region.clone(),
                signing_service: f.service.clone(),
                ..AuthArgs::default()
            };
            let clock = Clock::default();
            let at = parse_sdk_date(&f.date).unwrap_or_else(|| panic!("date"));
            clock.advance(at - clock.now_ms());
            Authenticator::with_args(storage.credentials, master, clock, &args)
        }

        async fn check(a: &Authenticator, v: &Vector) -> Result<Identity, AuthError> {
            let mut headers = HeaderMap::new();
            for (k, val) in &v.headers {
                let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
                headers.insert(name, HeaderValue::from_str(val).unwrap_or_else(|e| panic!("{e}")));
            }
            let req = SignedRequest {
                method: &v.method,
                path: &v.path,
                query: &v.query,
                headers: &headers,
                body: v.body.as_bytes(),
            };
            a.authenticate(&req, None).await
        }

        fn reason(r: Result<Identity, AuthError>) -> Option<Reason> {
            match r {
                Ok(_) => None,
                Err(AuthError::Unauthenticated(reason, _)) => Some(reason),
                Err(e) => panic!("not a 401: {e:?}"),
            }
        }

        fn with_header(v: &Vector, name: &str, value: impl FnOnce(&str) -> String) -> Vector {
            let mut t = v.clone();
            if let Some(h) = t.headers.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                *h.1 = value(h.1);
            }
            t
        }

        #[tokio::test]
        async fn every_mode_of_the_python_sdk_verifies_and_any_change_is_refused() {
            let f = fixture();
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let a = authenticator(&f, None, &dir).await;
            let other_secret = authenticator(&f, Some("another-secret-key-0000000000000000000000"), &dir).await;
            let modes: std::collections::BTreeSet<&str> = f.vectors.iter().map(|v| v.mode.as_str()).collect();
            assert_eq!(modes.len(), 5, "{modes:?}");
            for v in &f.vectors {
                let what = format!("{} {} {}", v.mode, v.method, v.access_key);
                if let Some(expect) = &v.expect {
                    let got = check(&a, v).await;
                    assert_eq!(reason(got).map(Reason::as_str), Some(expect.as_str()), "{what}");
                    continue;
                }
                assert_eq!(reason(check(&a, v).await), None, "{what}");
                assert_eq!(reason(check(&other_secret, v).await), Some(Reason::BadSignature), "{what}: wrong key");
                let mut t = v.clone();
                t.body.push(' ');
                assert_eq!(reason(check(&a, &t).await), Some(Reason::BadSignature), "{what}: body");
                let t = with_header(v, "content-type", |c| format!("{c};charset=latin1"));
                assert_eq!(reason(check(&a, &t).await), Some(Reason::BadSignature), "{what}: header");
                let mut t = v.clone();
                t.query = if t.query.is_empty() { "limit=1".into() } else { t.query.replace("limit=10", "limit=11") };
                assert_eq!(reason(check(&a, &t).await), Some(Reason::BadSignature), "{what}: query");
                let mut t = v.clone();
                t.method = if v.method == "GET" { "DELETE".into() } else { "GET".into() };
                assert_eq!(reason(check(&a, &t).await), Some(Reason::BadSignature), "{what}: method");
                let t = with_header(v, "authorization", |h| format!("{}0", &h[..h.len() - 2]));
                assert_eq!(reason(check(&a, &t).await), Some(Reason::BadSignature), "{what}: signature");
                let t = with_header(v, "authorization", |h| h.replacen("SignedHeaders", "Signed", 1));
                assert_eq!(reason(check(&a, &t).await), Some(Reason::MalformedAuthorization), "{what}: malformed");
                // Another mode's name over the same signature.
                let other = if v.mode == "SDK-HMAC-SHA256" { "SDK-HMAC-SM3" } else { "SDK-HMAC-SHA256" };
                let t = with_header(v, "authorization", |h| {
                    h.replacen(&v.mode, other, 1)
                        .replacen("Credential=", "Access=", 1)
                        .replace(&format!("/{}/{}/{}", &f.date[..8], f.region, f.service), "")
                });
                assert_eq!(reason(check(&a, &t).await), Some(Reason::BadSignature), "{what}: mode");
            }
            // One key pair derived per access key and asymmetric mode, however many requests.
            let pairs: std::collections::BTreeSet<(&str, &str)> = f
                .vectors
                .iter()
                .filter(|v| v.mode.contains("ECDSA") || v.mode.contains("SM2"))
                .map(|v| (v.access_key.as_str(), v.mode.as_str()))
                .collect();
            assert_eq!(a.derivations(), pairs.len() as u64);
        }

        /// Our signer (the CLI's) writes the SDK's very header in the deterministic modes, and
        /// in the others a signature the server accepts.
        #[tokio::test]
        async fn our_signer_signs_as_the_sdk_does() {
            let f = fixture();
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let a = authenticator(&f, None, &dir).await;
            for v in f.vectors.iter().filter(|v| v.expect.is_none()) {
                let algorithm = signature::Algorithm::from_name(&v.mode).unwrap_or_else(|| panic!("{}", v.mode));
                let signer = signature::Signer {
                    algorithm,
                    access_key: &v.access_key,
                    secret_key: &v.secret_key,
                    region_service: Some((&f.region, &f.service)),
                };
                let lower: Vec<(String, &str)> = v
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization") && !k.eq_ignore_ascii_case("x-sdk-date"))
                    .map(|(k, val)| (k.to_ascii_lowercase(), val.as_str()))
                    .collect();
                let headers: Vec<(&str, &str)> = lower.iter().map(|(k, val)| (k.as_str(), *val)).collect();
                let signed = signer.sign(&v.method, &v.path, &v.query, &headers, v.body.as_bytes(), &f.date);
                let theirs = v.headers.get("Authorization").cloned().unwrap_or_default();
                if matches!(algorithm, Algorithm::EcdsaP256 | Algorithm::Sm2) {
                    let ours = with_header(v, "authorization", |_| signed.authorization.clone());
                    assert_eq!(reason(check(&a, &ours).await), None, "{}", v.mode);
                } else {
                    assert_eq!(signed.authorization, theirs, "{}", v.mode);
                }
            }
        }

        #[tokio::test]
        async fn stale_dates_and_foreign_scopes_are_refused_before_any_derivation() {
            let f = fixture();
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let a = authenticator(&f, None, &dir).await;
            let v11 = f.vectors.iter().find(|v| v.mode == "V11-HMAC-SHA256" && v.expect.is_none()).cloned();
            let v11 = v11.unwrap_or_else(|| panic!("a V11 vector"));
            // The scope's date must be X-Sdk-Date's.
            let t = with_header(&v11, "authorization", |h| h.replacen(&format!("/{}/", &f.date[..8]), "/20240101/", 1));
            assert_eq!(reason(check(&a, &t).await), Some(Reason::WrongScope));
            // The refusal names what this endpoint expects.
            let wrong = f.vectors.iter().find(|v| v.expect.is_some()).cloned().unwrap_or_else(|| panic!("wrong"));
            let Err(AuthError::Unauthenticated(_, msg)) = check(&a, &wrong).await else { panic!("refused") };
            assert!(msg.contains(&format!("{:?}", f.region)) && msg.contains(&format!("{:?}", f.service)), "{msg}");
            let t = with_header(&v11, "authorization", |h| h.replacen(&format!("/{}, ", f.service), "/, ", 1));
            assert_eq!(reason(check(&a, &t).await), Some(Reason::MalformedAuthorization));
            // A garbage signature or an unknown key derives nothing.
            for v in f.vectors.iter().filter(|v| v.mode.contains("ECDSA") || v.mode.contains("SM2")) {
                let t = with_header(v, "authorization", |h| format!("{}zz", &h[..h.len() - 2]));
                assert_eq!(reason(check(&a, &t).await), Some(Reason::BadSignature));
                let t = with_header(v, "authorization", |h| h.replacen(&v.access_key, "AKUNKNOWN00000000000", 1));
                assert_eq!(reason(check(&a, &t).await), Some(Reason::UnknownKey));
            }
            assert_eq!(a.derivations(), 0);
            a.clock.advance(MAX_CLOCK_SKEW_MS + 1_000);
            for v in &f.vectors {
                assert_eq!(reason(check(&a, v).await), Some(Reason::ExpiredDate), "{}", v.mode);
            }
        }
    }

    mod properties {
        use super::*;
        use axum::http::{HeaderName, HeaderValue};
        use proptest::prelude::*;

        /// Authorization values near the real shape, so that parsing often succeeds.
        fn authorization() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..120),
                (".{0,30}", ".{0,30}", ".{0,70}").prop_map(|(h, s, g)| format!(
                    "SDK-HMAC-SHA256 Access={AK}, SignedHeaders={h}x-sdk-date{s}, Signature={g}"
                )
                .into_bytes()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            /// Whatever the headers and body, the authenticator answers (and never a valid
            /// identity for a made-up signature).
            #[test]
            fn the_authenticator_never_panics_on_arbitrary_headers(
                auth in authorization(),
                date in prop_oneof![Just(signature::sdk_date(crate::domain::now_ms()).into_bytes()), proptest::collection::vec(any::<u8>(), 0..20)],
                content in proptest::collection::vec(any::<u8>(), 0..70),
                token in proptest::collection::vec(any::<u8>(), 0..80),
                body in proptest::collection::vec(any::<u8>(), 0..40),
                query in ".{0,30}",
            ) {
                let (rt, a, _) = shared();
                let mut headers = HeaderMap::new();
                for (name, value) in [("authorization", &auth), ("x-sdk-date", &date), ("x-sdk-content-sha256", &content), ("x-auth-token", &token)] {
                    if let Ok(v) = HeaderValue::from_bytes(value) {
                        headers.insert(HeaderName::from_static(name), v);
                    }
                }
                let req = SignedRequest { method: "POST", path: "/v2/x", query: &query, headers: &headers, body: &body };
                let out = rt.block_on(a.authenticate(&req, None));
                prop_assert!(out.is_err(), "{out:?}");
            }
        }
    }
}
