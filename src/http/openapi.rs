//! `GET /openapi.json`: the OpenAPI 3 document of the service, derived at compile time from the
//! handlers' `#[utoipa::path]` annotations and the wire types (utoipa), with the paths of the
//! operations as [`super::routes`] registers them (an alias path documented as a copy of its
//! operation), then completed here with what every operation shares: the security schemes and
//! the DMS/APIGW error responses.
//!
//! The document cannot drift silently: its paths come from the same registrations as the
//! router's routes (`tests/api/openapi.rs` checks the two both ways on a live server), and
//! `tests/openapi/` validates live responses of every operation against it (schemathesis).

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::{ApiError, codes_of};

use super::AppState;
use super::routes::{self, Op, op};

/// Security scheme names, as the annotations and [`Shared`] use them.
pub const AKSK: &str = "aksk";
pub const TOKEN: &str = "token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kafka-tasks",
        license(name = "Apache-2.0"),
    ),
    components(schemas(
        crate::wire::error::ErrorBody,
        crate::wire::task::BulkDeletePreview,
        // What an event stream's `data:` text holds (SseEvent::data is that JSON as text).
        crate::wire::events::EventPayload
    )),
    tags(
        (name = "Background tasks", description = "DMS background tasks (ListBackgroundTasks and siblings)"),
        (name = "Task events", description = "Live task events as Server-Sent Events (an extension; DMS has none)"),
        (name = "Scheduled tasks", description = "DMS scheduled tasks (ListScheduledTasks and siblings)"),
        (name = "Instances", description = "Instances and the operations that create tasks"),
        (name = "Retention", description = "Extension: how long finished task records are kept, per project (admin role)"),
        (name = "Connected mode", description = "Extension: the Apache Kafka cluster an instance's operations are done on (admin role)"),
        (name = "Tokens", description = "IAM-shaped tokens for `X-Auth-Token`"),
        (name = "Executors", description = "What executors report, and the callback of webhook executors (kafka-tasks extensions)"),
        (name = "Service", description = "Health, readiness, metrics and this document (public)"),
    )
)]
pub struct ApiDoc;

/// The document's description; the error codes it names come from [`ApiError`].
fn description() -> String {
    let code = |e: ApiError| e.code_and_message().0;
    format!(
        "The background-task subsystem of a Kafka control plane, wire-compatible with \
         Huawei Cloud DMS for Kafka's background-task API (and the instance operations that create tasks).\n\n\
         Authentication: every `/v2` and `/v3` path takes either an AK/SK signature (`Authorization: \
         SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…` with `X-Sdk-Date`, as the official SDKs \
         sign) or a token (`X-Auth-Token`, from `POST /v3/auth/tokens` or `kafka-tasks token create`). \
         `/healthz`, `/readyz`, `/metrics` and this document are public.\n\n\
         Errors are `{{\"error_code\",\"error_msg\"}}` with a DMS code (`{}`, …); errors from the \
         gateway layer (authentication, throttling, body size) carry an `APIGW.*` code and the \
         `request_id`, which every response also returns in `X-Request-Id`. A method a path does not \
         serve is 405 `{}`; an unknown path is 404 `{}`.",
        code(ApiError::InvalidParam("name")),
        code(ApiError::MethodNotAllowed),
        code(ApiError::NoSuchUrl),
    )
}

/// The description of the shared error response of `status`: the codes it carries and what
/// they mean, from [`ApiError`] (the one place codes are defined).
fn error_description(status: u16) -> String {
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let codes = codes_of(status);
    // The gateway's errors carry the request id in the body too (as APIGW does).
    let with_id = |code: &str| code.starts_with("APIGW");
    let mut text = match codes.as_slice() {
        [(code, meaning)] => format!("{code}: {meaning}{}", if with_id(code) { " (with request_id)" } else { "" }),
        many => {
            let listed: Vec<String> = many
                .iter()
                .map(|(code, meaning)| {
                    format!("{code} ({meaning}{})", if with_id(code) { ", with request_id" } else { "" })
                })
                .collect();
            match listed.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => listed.concat(),
            }
        }
    };
    match status.as_u16() {
        400 => text.insert_str(0, "Invalid input: "),
        429 => text.push_str("; Retry-After says when to retry"),
        503 => text.push_str("; Retry-After: 1"),
        _ => {}
    }
    text
}

/// The statuses any request can get, authenticated or not (the body guard, the serve loop, a panic).
const ANY_REQUEST: &[u16] = &[408, 413, 414, 431, 500, 503];
/// Added for an authenticated operation.
const AUTHENTICATED: &[u16] = &[400, 401, 403, 404, 429];

fn error_response_name(status: u16) -> String {
    format!("Error{status}")
}

/// Adds what every operation shares; see the module doc.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.description = Some(description());
        let components = doc.components.get_or_insert_with(Default::default);
        let signed = ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "AK/SK signature over the canonical request, with `X-Sdk-Date` (and `X-Project-Id`) among the \
             signed headers, as the official SDKs sign, in any of their modes: `SDK-HMAC-SHA256`, `SDK-HMAC-SM3`, \
             `SDK-ECDSA-P256-SHA256`, `SDK-SM2-SM3` (`ALGORITHM Access=AK, SignedHeaders=…, Signature=…`; the \
             ECDSA and SM2 key pairs derived from the SK, the signature DER in hex), and derived AK/SK \
             `V11-HMAC-SHA256 Credential=AK/YYYYMMDD/REGION/SERVICE, SignedHeaders=…, Signature=…` (region and \
             service: the server's `--signing-region` and `--signing-service`)",
        ));
        components.add_security_scheme(AKSK, SecurityScheme::ApiKey(signed));
        let token = ApiKey::Header(ApiKeyValue::with_description(
            "X-Auth-Token",
            "A token from `POST /v3/auth/tokens` (its `X-Subject-Token`) or `kafka-tasks token create`",
        ));
        components.add_security_scheme(TOKEN, SecurityScheme::ApiKey(token));
        for status in ANY_REQUEST.iter().chain(AUTHENTICATED) {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            let mut response =
                ResponseBuilder::new().description(error_description(*status)).content("application/json", content);
            response = response.header("X-Request-Id", request_id_header());
            if matches!(status, 429 | 503) {
                let header = utoipa::openapi::HeaderBuilder::new()
                    .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Integer)))
                    .description(Some("Seconds to wait before retrying"))
                    .build();
                response = response.header("Retry-After", header);
            }
            components.responses.insert(error_response_name(*status), RefOr::T(response.build()));
        }
        let both = vec![SecurityRequirement::new(AKSK, [""; 0]), SecurityRequirement::new(TOKEN, [""; 0])];
        for (path, item) in doc.paths.paths.iter_mut() {
            let authenticated = path.starts_with("/v2/") || path.starts_with("/v3/");
            for (_, op) in routes::operations_mut(item) {
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .entry("X-Request-Id".to_owned())
                            .or_insert_with(|| RefOr::T(request_id_header()));
                    }
                }
                if authenticated && op.security.is_none() {
                    op.security = Some(both.clone());
                }
                let statuses = ANY_REQUEST.iter().chain(if authenticated { AUTHENTICATED } else { &[] });
                for status in statuses {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| {
                        RefOr::Ref(Ref::new(format!("#/components/responses/{}", error_response_name(*status))))
                    });
                }
            }
        }
    }
}

/// `X-Request-Id`, on every response (also in the log lines of the request and in APIGW errors).
fn request_id_header() -> utoipa::openapi::Header {
    let schema = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some("^[0-9a-f]{32}$"));
    utoipa::openapi::HeaderBuilder::new()
        .schema(Some(schema))
        .description(Some("The request's id, as in the server's logs and APIGW error bodies"))
        .build()
}

/// The document: [`ApiDoc`] (information, tags, shared components), the registered operations'
/// paths ([`super::routes`]) and, with `control`, test control's; then what every operation
/// shares ([`Shared`]).
fn build(control: bool) -> String {
    let mut doc = ApiDoc::openapi();
    doc.merge(routes::api().doc);
    doc.merge(routes::public().doc);
    if control {
        doc.merge(super::control::ControlDoc::openapi());
        doc.merge(routes::control().doc);
    }
    Shared.modify(&mut doc);
    doc.to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| build(false));

/// The document of a server with `--test-control`: the same, and the test-control operations.
static DOCUMENT_WITH_CONTROL: LazyLock<String> = LazyLock::new(|| build(true));

pub fn operations() -> Vec<Op> {
    vec![op(utoipa_axum::routes!(document))]
}

/// This document (public, like `/healthz`: it describes the API and holds no secret).
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "ShowOpenApiDocument",
    tag = "Service",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
pub async fn document(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let doc = if state.control.is_some() { DOCUMENT_WITH_CONTROL.as_str() } else { DOCUMENT.as_str() };
    ([(CONTENT_TYPE, "application/json")], doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_scheme_names_every_signing_mode_the_server_verifies() {
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap_or_default();
        let text = doc["components"]["securitySchemes"][AKSK]["description"].as_str().unwrap_or_default();
        for alg in crate::auth::signature::Algorithm::ALL {
            assert!(text.contains(&format!("`{}", alg.name())), "{} missing from {text:?}", alg.name());
        }
    }

    /// Every `$ref` of both documents (with and without test control) names a component that
    /// is there: a schema named by `value_type` or `body` and never registered would dangle.
    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(serde_json::Value::as_str) {
                        out.push(r);
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        for text in [build(false), build(true)] {
            let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let mut found = Vec::new();
            refs(&doc, &mut found);
            assert!(found.len() > 10, "too few references: {found:?}");
            for r in found {
                let target = r.strip_prefix('#').and_then(|p| doc.pointer(p));
                assert!(target.is_some(), "{r} does not resolve");
            }
        }
        let with_control: serde_json::Value = serde_json::from_str(&build(true)).unwrap_or_default();
        let schemas = &with_control["components"]["schemas"];
        for name in ["SseEvent", "EventPayload", "EventData", "MissedData", "RulesAnswer", "ClockAnswer"] {
            assert!(schemas.get(name).is_some(), "{name} is not in the document");
        }
    }

    #[test]
    fn the_document_names_every_error_status_it_refers_to() {
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap_or_default();
        let responses = &doc["components"]["responses"];
        for status in ANY_REQUEST.iter().chain(AUTHENTICATED) {
            let text = responses[error_response_name(*status)]["description"].as_str().unwrap_or_default();
            let codes = codes_of(axum::http::StatusCode::from_u16(*status).unwrap_or_default());
            assert!(!codes.is_empty(), "no error has status {status}");
            for (code, _) in codes {
                assert!(text.contains(code), "the {status} response does not name {code}: {text:?}");
            }
        }
        for r in routes::all().iter().filter(|r| r.alias_of.is_some()) {
            let method = r.method.as_str().to_lowercase();
            let id = format!("{}Alias", r.operation_id);
            assert_eq!(doc["paths"][&r.path][&method]["operationId"], id.as_str(), "{} {}", r.method, r.path);
        }
    }
}
