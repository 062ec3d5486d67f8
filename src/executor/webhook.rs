//! The `webhook` executor: each step is POSTed to a receiver the operator runs, which ends it
//! later through the callback endpoint.
//!
//! The POST's body is `{"task": <the task document>, "callback": {"path", "url", "token"}}`.
//! It is signed: `X-KT-Timestamp` is the Unix time in seconds and `X-KT-Signature` is
//! `sha256=` and the hex HMAC-SHA256, under the secret the executor file names, of
//! `"{timestamp}.{body}"`; a receiver checks both (and refuses an old timestamp) before it acts.
//!
//! The receiver answers the step by calling `POST /v2/{project_id}/instances/{instance_id}/tasks/
//! {task_id}/executor-callback`, signed with an AK/SK of the project (role operator or admin)
//! like every other call, with the attempt's one-time `token` in the body. The step waits for
//! the answer (read from the store, so that any process may receive it) until the operation's
//! timeout, which fails the task.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::watch;

use super::{Outcome, StepRun};
use crate::storage::StepAnswer;

/// The shortest webhook secret accepted (bytes).
const MIN_SECRET: usize = 16;
/// How long the receiver has to accept the POST (it answers the step later).
const POST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Spec {
    url: String,
    secret: Vec<u8>,
    callback_base: Option<String>,
    /// Its own client: each webhook may trust its own CA.
    client: reqwest::Client,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec").field("url", &self.url).field("secret", &"***").finish()
    }
}

impl Spec {
    pub fn new(
        op: &str,
        url: String,
        secret_env: &str,
        callback_base: Option<String>,
        ca_file: Option<&std::path::Path>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{op}: the webhook url must be http://… or https://…"
        );
        let secret = env(secret_env).unwrap_or_default();
        anyhow::ensure!(
            secret.len() >= MIN_SECRET,
            "{op}: the webhook secret variable {secret_env} must be set to at least {MIN_SECRET} bytes"
        );
        let callback_base = callback_base.map(|b| b.trim_end_matches('/').to_owned());
        let client = crate::tls::client_builder(ca_file)
            .and_then(|b| Ok(b.timeout(POST_TIMEOUT).redirect(reqwest::redirect::Policy::none()).build()?))
            .map_err(|e| anyhow::anyhow!("{op}: the webhook's HTTP client (ca_file): {e:#}"))?;
        Ok(Spec { url, secret: secret.into_bytes(), callback_base, client })
    }

    /// `sha256=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"`.
    pub fn signature(&self, timestamp: i64, body: &[u8]) -> String {
        sign(&self.secret, timestamp, body)
    }
}

/// The signature a receiver checks: `sha256=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"`.
#[allow(clippy::expect_used, reason = "HMAC accepts a key of any length: new_from_slice cannot fail")]
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// How a callback token is kept: its SHA-256, in hex (the token itself is only ever in the
/// webhook's body).
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Posts the step and waits for its answer, or for `stop`.
pub async fn run(spec: &Spec, req: &StepRun<'_>, mut stop: watch::Receiver<bool>) -> Outcome {
    let t = req.task;
    let path = format!(
        "/v2/{}/instances/{}/tasks/{}/executor-callback",
        t.project_id.as_str(),
        t.instance_id.as_str(),
        t.id.as_str()
    );
    let url = spec.callback_base.as_ref().map(|b| format!("{b}{path}"));
    let body = json!({
        "task": req.document(),
        "callback": {"path": path, "url": url, "token": req.token},
    })
    .to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let post = spec
        .client
        .post(&spec.url)
        .header("content-type", "application/json")
        .header("x-kt-timestamp", timestamp.to_string())
        .header("x-kt-signature", spec.signature(timestamp, body.as_bytes()))
        .header("x-kt-task-id", t.id.as_str())
        .header("x-kt-attempt", req.attempt.to_string())
        .body(body)
        .send();
    let answered = tokio::select! {
        r = post => r,
        _ = crate::executor::stopped(&mut stop) => return Outcome::Stopped { tail: String::new() },
    };
    match answered {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            return Outcome::Failed {
                reason: format!("the webhook receiver refused the step: HTTP {}", r.status().as_u16()),
                tail: String::new(),
            };
        }
        Err(e) if crate::tls::certificate_refused(&e).is_some() => {
            let why = crate::tls::certificate_refused(&e).unwrap_or_default();
            return Outcome::Failed {
                reason: format!(
                    "the webhook receiver's certificate is not trusted ({why}); set ca_file to the CA that signed it"
                ),
                tail: String::new(),
            };
        }
        Err(e) => {
            return Outcome::Failed {
                reason: format!("the webhook receiver could not be reached: {e}"),
                tail: String::new(),
            };
        }
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(req.poll) => {}
            _ = crate::executor::stopped(&mut stop) => return Outcome::Stopped { tail: String::new() },
        }
        let run = match req.runs.task_run(&t.id).await {
            Ok(Some(run)) if run.step == req.step && run.attempt == req.attempt => run,
            Ok(_) => continue,
            Err(e) => {
                crate::limited!(warn, &format!("webhook poll {e}"), error = %e, "could not read a webhook's answer");
                continue;
            }
        };
        match run.answer {
            Some(StepAnswer::Success) => return Outcome::Done { tail: String::new() },
            Some(StepAnswer::Failure { reason }) => {
                return Outcome::Failed {
                    reason: format!("the webhook receiver failed the step: {reason}"),
                    tail: String::new(),
                };
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let a = super::sign(b"0123456789abcdef", 1, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, super::sign(b"0123456789abcdef", 2, b"{}"));
        assert_ne!(a, super::sign(b"0123456789abcdef", 1, b"{ }"));
        assert_ne!(a, super::sign(b"0123456789abcdeF", 1, b"{}"));
    }
}
