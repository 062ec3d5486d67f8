//! `GET /openapi.json`: the OpenAPI 3 document of the service, derived at compile time from the
//! handlers' `#[utoipa::path]` annotations and the wire types (utoipa), then completed here with
//! what every operation shares: the security schemes, the DMS/APIGW error responses, and the
//! alias paths that one handler serves under two documented URLs.
//!
//! The document cannot drift silently: `tests/api/openapi.rs` checks it against the routes the
//! router registers (both ways), and `tests/openapi/` validates live responses of every
//! operation against it (schemathesis).

use std::sync::LazyLock;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::AppState;
use super::{clusters, events, executors, health, instances, retention, scheduled, tasks, tokens, zones};

/// Security scheme names, as the annotations and [`Shared`] use them.
pub const AKSK: &str = "aksk";
pub const TOKEN: &str = "token";

/// One handler serves both paths; the second is documented as a copy of the first.
/// (`tests/api/openapi.rs` fails if a registered alias is missing here.)
const ALIASES: &[(&str, &str)] = &[
    ("/v2/kafka/{project_id}/instances", "/v2/{project_id}/kafka/instances"),
    ("/v2/{project_id}/kafka/instances/{instance_id}/extend", "/v2/kafka/{project_id}/instances/{instance_id}/extend"),
    (
        "/v2/{project_id}/kafka/instances/{instance_id}/reassign",
        "/v2/kafka/{project_id}/instances/{instance_id}/reassign",
    ),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kafka-tasks",
        description = "The background-task subsystem of a Kafka control plane, wire-compatible with \
            Huawei Cloud DMS for Kafka's background-task API (and the instance operations that create tasks).\n\n\
            Authentication: every `/v2` and `/v3` path takes either an AK/SK signature (`Authorization: \
            SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…` with `X-Sdk-Date`, as the official SDKs \
            sign) or a token (`X-Auth-Token`, from `POST /v3/auth/tokens` or `kafka-tasks token create`). \
            `/healthz`, `/readyz`, `/metrics` and this document are public.\n\n\
            Errors are `{\"error_code\",\"error_msg\"}` with a DMS code (`DMS.00400062`, …); errors from the \
            gateway layer (authentication, throttling, body size) carry an `APIGW.*` code and the \
            `request_id`, which every response also returns in `X-Request-Id`. A method a path does not \
            serve is 405 `DMS.00405001`; an unknown path is 404 `DMS.00404001`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        tasks::list,
        tasks::show,
        tasks::delete,
        tasks::delete_many,
        tasks::progress,
        events::project_events,
        events::instance_events,
        scheduled::list,
        scheduled::update,
        scheduled::delete,
        instances::create,
        instances::list,
        instances::batch_action,
        instances::show,
        instances::update,
        instances::delete,
        instances::show_configs,
        instances::modify_configs,
        instances::auto_topic,
        instances::resize,
        instances::reassign,
        instances::show_upgrade,
        instances::upgrade,
        instances::show_tags,
        instances::show_cluster,
        zones::list,
        tokens::create,
        executors::show_run,
        executors::show_run_alias,
        executors::callback,
        retention::show,
        retention::set,
        retention::reset,
        clusters::show,
        clusters::bind,
        clusters::unbind,
        health::healthz,
        health::ready,
        health::metrics,
        document,
    ),
    components(schemas(crate::wire::error::ErrorBody, crate::wire::task::BulkDeletePreview)),
    modifiers(&Shared),
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

/// Every error response: the status, then the DMS/APIGW codes it carries.
const ERRORS: &[(u16, &str)] = &[
    (
        400,
        "Invalid input: DMS.00400002 (project id), DMS.00400030 (instance id), DMS.00400070 (task id), \
         DMS.00400062 (a parameter, or a query key given twice), DMS.00400142 (timestamp), DMS.00400800 (body), \
         DMS.00400017 (task still running), DMS.00400026 (instance state)",
    ),
    (401, "APIGW.0301: missing, malformed, expired or wrong credentials (with request_id)"),
    (403, "APIGW.0302 (credential of another project, with request_id) or DMS.00403003 (role lacks permission)"),
    (
        404,
        "DMS.00404022 (no such instance), DMS.00404070 (no such task), DMS.00404090 (no cluster binding) or \
         DMS.00404001 (no such URL)",
    ),
    (408, "DMS.00408000: the request body did not arrive in time"),
    (413, "APIGW.0201: request body too large (with request_id)"),
    (414, "DMS.00414000: request URI too long"),
    (429, "APIGW.0308: throttled (with request_id); Retry-After says when to retry"),
    (431, "DMS.00431000: request header fields too large"),
    (500, "DMS.00500000: internal error (the cause is logged with the request id, never sent)"),
    (503, "DMS.00503000 (database unavailable) or DMS.00503001 (server busy); Retry-After: 1"),
];

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
        for (status, description) in ERRORS {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            let mut response = ResponseBuilder::new().description(*description).content("application/json", content);
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
            for op in operations(item) {
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
        for (primary, alias) in ALIASES {
            let Some(item) = doc.paths.paths.get(*primary) else { continue };
            let mut copy = item.clone();
            for op in operations(&mut copy) {
                op.operation_id = op.operation_id.as_ref().map(|id| format!("{id}Alias"));
            }
            doc.paths.paths.insert((*alias).to_owned(), copy);
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

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head]
        .into_iter()
        .filter_map(Option::as_mut)
}

/// The document, built once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));

/// The document of a server with `--test-control`: the same, and the test-control operations.
static DOCUMENT_WITH_CONTROL: LazyLock<String> = LazyLock::new(|| {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::control::ControlDoc::openapi());
    // What every operation shares, for the added ones too (it leaves the others as they are).
    Shared.modify(&mut doc);
    doc.to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
});

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
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

    #[test]
    fn the_document_names_every_error_status_it_refers_to() {
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap_or_default();
        let responses = &doc["components"]["responses"];
        for status in ANY_REQUEST.iter().chain(AUTHENTICATED) {
            assert!(responses[error_response_name(*status)].is_object(), "{status} has no shared response");
        }
        for (primary, alias) in ALIASES {
            assert!(doc["paths"][primary].is_object(), "{primary} is not documented");
            assert!(doc["paths"][alias].is_object(), "{alias} is not documented");
        }
    }
}
