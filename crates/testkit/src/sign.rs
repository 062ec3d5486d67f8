//! The one way tests sign a request: the library's own signer ([`kafka_tasks_wire::signature`]),
//! `SDK-HMAC-SHA256` as the Python SDK signs, over the headers the caller sends.

use kafka_tasks_wire::credential::IssuedCredential;
use kafka_tasks_wire::signature::{Algorithm, Signer, sdk_date};

/// What the signature covers of the body.
pub enum Payload<'a> {
    /// The body itself (its SHA-256 enters the canonical request).
    Body(&'a [u8]),
    /// A given payload hash: a content-hash header's value, or `UNSIGNED-PAYLOAD`.
    Hash(&'a str),
}

/// `headers` (lowercase names, every one signed) followed by the `x-sdk-date` and
/// `authorization` of a request signed at `at_ms` with `cred`.
pub fn signed_headers(
    cred: &IssuedCredential,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    payload: Payload<'_>,
    at_ms: i64,
) -> Vec<(String, String)> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let signer = Signer {
        algorithm: Algorithm::Sha256,
        access_key: &cred.access_key,
        secret_key: &cred.secret_key,
        region_service: None,
    };
    let date = sdk_date(at_ms);
    let signed = match payload {
        Payload::Body(body) => signer.sign(method, path, query, headers, body, &date),
        Payload::Hash(hash) => signer.sign_payload(method, path, query, headers, hash, &date),
    };
    let mut out: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.push(("x-sdk-date".into(), signed.sdk_date));
    out.push(("authorization".into(), signed.authorization));
    out
}
