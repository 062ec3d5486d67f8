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
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ApiError, codes_of};

use super::routes::{self, Op, op};
use super::{AppState, tasks};

/// Security scheme names, as the annotations and [`Shared`] use them.
pub const AKSK: &str = "aksk";
pub const TOKEN: &str = "token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kafka-tasks",
        license(name = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, tasks::BulkDeletePreview)),
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

/// The DMS/APIGW error body.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// `DMS.*` or `APIGW.*`.
    #[schema(example = "DMS.00404022")]
    error_code: String,
    #[schema(example = "This instance does not exist.")]
    error_msg: String,
    /// Only on `APIGW.*` errors.
    #[schema(nullable = false)]
    request_id: Option<String>,
}

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

/// Parameter and body shapes the handlers read through [`super::extract`] (path, query and
/// `JsonBody`), declared here for the document only.
pub mod shapes {
    #![allow(dead_code)]

    use utoipa::{IntoParams, ToSchema};

    /// `{project_id}`.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Path)]
    pub struct ProjectPath {
        /// The project: 32 hexadecimal characters.
        #[param(pattern = "^[0-9a-fA-F]{32}$")]
        project_id: String,
    }

    /// `{project_id}` and `{instance_id}`.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Path)]
    pub struct InstancePath {
        /// The project: 32 hexadecimal characters.
        #[param(pattern = "^[0-9a-fA-F]{32}$")]
        project_id: String,
        /// The instance: a UUID in its hyphenated form.
        #[param(format = "uuid")]
        instance_id: String,
    }

    /// `{project_id}`, `{instance_id}` and `{task_id}`.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Path)]
    pub struct TaskPath {
        /// The project: 32 hexadecimal characters.
        #[param(pattern = "^[0-9a-fA-F]{32}$")]
        project_id: String,
        /// The instance: a UUID in its hyphenated form.
        #[param(format = "uuid")]
        instance_id: String,
        /// The task: 32 lowercase hexadecimal characters.
        #[param(pattern = "^[0-9a-f]{32}$")]
        task_id: String,
    }

    /// Where a task event stream resumes, for clients that cannot set `Last-Event-ID`.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct EventQuery {
        /// Resume just after the event with this id (`0`: from the oldest event kept). Ids are
        /// opaque and a project's own. Without it (and without `Last-Event-ID`) the stream
        /// carries only events from now on. An id this project's streams never showed is 400
        /// DMS.00400062.
        #[param(pattern = "^(0|[0-9a-f]{32})$")]
        after: Option<String>,
    }

    /// The SSE resume header.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Header)]
    pub struct LastEventId {
        /// As `after`, and wins over it: the id of the last event received (browsers resend it
        /// when they reconnect).
        #[param(rename = "Last-Event-ID", pattern = "^(0|[0-9a-f]{32})$")]
        last_event_id: Option<String>,
    }

    /// Paging and the creation-time range of ListBackgroundTasks and ListScheduledTasks.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct PageQuery {
        /// 1-based index of the first task (0 also means the first); not with `offset`.
        #[param(minimum = 0)]
        start: Option<u64>,
        /// The same as `start` (the name the Terraform provider sends); not with `start`.
        #[param(minimum = 0)]
        offset: Option<u64>,
        /// Tasks per page, 1 to 100 (default 10).
        #[param(minimum = 1, maximum = 100)]
        limit: Option<u64>,
        /// Created at or after this UTC second, `yyyyMMddHHmmss`.
        #[param(pattern = "^[0-9]{14}$", example = "20260101000000")]
        begin_time: Option<String>,
        /// Created at or before this UTC second, `yyyyMMddHHmmss`; not before `begin_time`.
        #[param(pattern = "^[0-9]{14}$", example = "20261231235959")]
        end_time: Option<String>,
    }

    /// The bulk delete's filter (an extension): finished background tasks created in the range.
    /// Any other query key is refused.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct BulkDeleteQuery {
        /// Created at or after this UTC second, `yyyyMMddHHmmss` (default: the beginning of time).
        #[param(pattern = "^[0-9]{14}$", example = "20260101000000")]
        begin_time: Option<String>,
        /// Created at or before this UTC second, `yyyyMMddHHmmss` (required).
        #[param(pattern = "^[0-9]{14}$", example = "20261231235959")]
        end_time: String,
        /// `SUCCESS`, `FAILED`, `CANCELLED`, or several comma-separated (default: all three).
        #[param(pattern = "^(SUCCESS|FAILED|CANCELLED)(,(SUCCESS|FAILED|CANCELLED))*$", example = "FAILED,CANCELLED")]
        status: Option<String>,
        /// Only tasks of this name (1-64 letters, digits, `_`, `-`, `.`).
        #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "restartInstance")]
        name: Option<String>,
        /// `true`: remove nothing; answer how many records the same filter matches now and
        /// the oldest 100 of them (`BulkDeletePreview`). `false` is the same as leaving it out.
        #[param(pattern = "^(true|false)$", example = "true")]
        dry_run: Option<String>,
    }

    /// UpdateScheduledTask's query: at least one of the two.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct RescheduleQuery {
        /// The new UTC execution time, `yyyyMMddHHmmss`, in the future.
        #[param(pattern = "^[0-9]{14}$", example = "20301231235959")]
        execute_at: Option<String>,
        /// `CANCELLED` cancels a waiting task; `null` makes a cancelled one wait again.
        #[param(inline)]
        status: Option<ScheduleStatus>,
    }

    #[derive(ToSchema)]
    pub enum ScheduleStatus {
        #[schema(rename = "CANCELLED")]
        Cancelled,
        #[schema(rename = "null")]
        Null,
    }

    /// CreateInstanceByEngine / CreatePostPaidKafkaInstance. Other descriptive fields
    /// (`specification`, `vpc_id`, `available_zones`, `ssl_enable`, …) are accepted and kept.
    #[derive(ToSchema)]
    pub struct CreateInstanceBody {
        /// 4 to 64 characters: a letter, then letters, digits, `_` or `-`.
        #[schema(pattern = "^[A-Za-z][A-Za-z0-9_-]{3,63}$")]
        name: String,
        /// Only `kafka`.
        engine: Option<String>,
        #[schema(example = "3.x")]
        engine_version: String,
        #[schema(example = 3)]
        broker_num: u32,
        /// GB.
        #[schema(example = 300)]
        storage_space: u32,
        #[schema(example = "c6.2u4g.cluster")]
        product_id: String,
        enable_auto_topic: Option<bool>,
        description: Option<String>,
        /// `HH:mm:ss`, with `maintain_end`.
        maintain_begin: Option<String>,
        maintain_end: Option<String>,
        /// Zone ids from ListAvailableZones (`GET /v2/available-zones`); any other is refused.
        #[schema(example = json!(["az1"]))]
        available_zones: Option<Vec<String>>,
        /// At most 20, keys distinct: the key 1 to 128 characters, the value at most 255, both of
        /// letters, digits, spaces and `_ . : = + - @`. ShowKafkaTags returns them.
        tags: Option<Vec<Tag>>,
    }

    /// UpdateInstance: any of these fields.
    #[derive(ToSchema)]
    pub struct UpdateInstanceBody {
        /// 4 to 64 characters: a letter, then letters, digits, `_` or `-`.
        #[schema(pattern = "^[A-Za-z][A-Za-z0-9_-]{3,63}$")]
        name: Option<String>,
        description: Option<String>,
        /// `HH:mm:ss`, with `maintain_end`.
        maintain_begin: Option<String>,
        maintain_end: Option<String>,
        security_group_id: Option<String>,
        #[schema(inline)]
        retention_policy: Option<RetentionPolicy>,
        enterprise_project_id: Option<String>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum RetentionPolicy {
        ProduceReject,
        TimeBase,
    }

    /// BatchRestartOrDeleteInstances.
    #[derive(ToSchema)]
    pub struct BatchActionBody {
        #[schema(inline)]
        action: BatchAction,
        /// Instance ids, 1 to 50.
        instances: Vec<String>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum BatchAction {
        Restart,
        Delete,
    }

    /// ModifyInstanceConfigs.
    #[derive(ToSchema)]
    pub struct ModifyConfigsBody {
        kafka_configs: Vec<ConfigChange>,
    }

    #[derive(ToSchema)]
    pub struct ConfigChange {
        #[schema(example = "log.retention.hours")]
        name: String,
        #[schema(example = "72")]
        value: String,
    }

    /// UpdateInstanceAutoCreateTopic.
    #[derive(ToSchema)]
    pub struct AutoTopicBody {
        enable_auto_topic: bool,
    }

    /// ResizeEngineInstance.
    #[derive(ToSchema)]
    pub struct ResizeBody {
        #[schema(inline)]
        oper_type: ResizeKind,
        new_storage_space: Option<u32>,
        new_broker_num: Option<u32>,
        new_product_id: Option<String>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum ResizeKind {
        Storage,
        Horizontal,
        Vertical,
    }

    /// CreateKafkaReassignmentTask.
    #[derive(ToSchema)]
    pub struct ReassignBody {
        reassignments: Vec<Reassignment>,
        /// Bytes per second, or -1 for none.
        throttle: Option<i64>,
        /// Only estimate the time (`{"reassignment_time"}`), creating no task.
        time_estimate: Option<bool>,
        is_schedule: Option<bool>,
        /// Epoch milliseconds, in the future, with `is_schedule: true`.
        execute_at: Option<i64>,
    }

    #[derive(ToSchema)]
    pub struct Reassignment {
        /// Kafka's rule: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..` (else 400 `DMS.00400062`).
        #[schema(pattern = "^[a-zA-Z0-9._-]{1,249}$")]
        topic: String,
        brokers: Option<Vec<i32>>,
        replication_factor: Option<i32>,
        assignment: Option<Vec<PartitionAssignment>>,
    }

    #[derive(ToSchema)]
    pub struct PartitionAssignment {
        partition: Option<i32>,
        partition_brokers: Option<Vec<i32>>,
    }

    /// UpgradeInstance.
    #[derive(ToSchema)]
    pub struct UpgradeBody {
        is_schedule: Option<bool>,
        /// Epoch milliseconds, in the future, with `is_schedule: true`.
        execute_at: Option<i64>,
    }

    /// `POST /v3/auth/tokens`: an IAM-shaped request; only the project scope is read.
    #[derive(ToSchema)]
    pub struct TokenBody {
        #[schema(inline)]
        auth: TokenAuth,
    }

    #[derive(ToSchema)]
    pub struct TokenAuth {
        #[schema(inline)]
        scope: TokenScope,
    }

    #[derive(ToSchema)]
    pub struct TokenScope {
        #[schema(inline)]
        project: IdOnly,
    }

    #[derive(ToSchema)]
    pub struct IdOnly {
        id: String,
    }

    // ---- responses built as JSON values by the handlers ----

    /// ListInstances.
    #[derive(ToSchema)]
    pub struct InstanceList {
        instance_num: u64,
        instances: Vec<InstanceJson>,
    }

    /// An instance as ShowInstance and ListInstances return it; kept descriptive fields
    /// (`description`, `vpc_id`, `available_zones`, `ssl_enable`, …) appear when set.
    #[derive(ToSchema)]
    pub struct InstanceJson {
        #[schema(format = "uuid")]
        instance_id: String,
        name: String,
        #[schema(example = "kafka")]
        engine: String,
        engine_version: String,
        status: crate::domain::instance::InstanceStatus,
        broker_num: u32,
        storage_space: u32,
        total_storage_space: u32,
        product_id: String,
        enable_auto_topic: bool,
        user_id: String,
        user_name: String,
        project_id: String,
        /// Epoch milliseconds, as a string (as DMS sends it).
        #[schema(example = "1764316800000")]
        created_at: String,
        created_at_iso: String,
        /// The id of the task that holds the instance busy, or null.
        task: Option<String>,
        maintain_begin: String,
        maintain_end: String,
        /// Billing mode: always 1, pay-per-use.
        #[schema(example = 1)]
        charging_mode: i32,
        /// The brokers' addresses, comma-separated (once the instance is created).
        #[schema(example = "192.168.7.11,192.168.7.12,192.168.7.13")]
        connect_address: Option<String>,
        /// The port of `connect_address` (once the instance is created).
        #[schema(example = 9092)]
        port: Option<u16>,
        /// A JSON document in a string (once the instance is created): each broker's listener
        /// address → `{"advertised_ip","broker_id","port","port_id"}`.
        #[schema(
            example = "{\"192.168.7.11\":{\"advertised_ip\":\"192.168.7.11\",\"broker_id\":\"0\",\"port\":9011,\"port_id\":\"3f6c1a52-58c4-4b7e-9a55-2c1d0f8e6b21\"}}"
        )]
        cross_vpc_info: Option<String>,
        /// The tags given at creation.
        tags: Option<Vec<Tag>>,
    }

    /// A resource tag.
    #[derive(ToSchema)]
    pub struct Tag {
        #[schema(example = "owner")]
        key: String,
        #[schema(example = "team-a")]
        value: String,
    }

    /// ShowKafkaTags: the instance's tags.
    #[derive(ToSchema)]
    pub struct TagList {
        tags: Vec<Tag>,
    }

    /// ShowKafkaCluster: `{"cluster": {"brokers": […]}}`.
    #[derive(ToSchema)]
    pub struct KafkaCluster {
        cluster: ClusterBrokers,
    }

    #[derive(ToSchema)]
    pub struct ClusterBrokers {
        /// Empty until the instance is created.
        brokers: Vec<ClusterBroker>,
    }

    #[derive(ToSchema)]
    pub struct ClusterBroker {
        #[schema(example = "0")]
        broker_id: String,
        #[schema(example = "192.168.7.11")]
        host: String,
        #[schema(example = 9092)]
        port: u16,
        health: bool,
    }

    /// ListAvailableZones.
    #[derive(ToSchema)]
    pub struct AvailableZones {
        region_id: String,
        available_zones: Vec<AvailableZone>,
    }

    /// One availability zone, with DMS's types and spelling.
    #[derive(ToSchema)]
    #[allow(non_snake_case)]
    pub struct AvailableZone {
        /// What CreateInstance's `available_zones` takes.
        #[schema(example = "az1")]
        id: String,
        #[schema(example = "kafka-tasks-1a")]
        code: String,
        name: String,
        /// A string, as DMS sends it.
        port: String,
        /// `"true"` or `"false"`, a string.
        resource_availability: String,
        default_az: bool,
        soldOut: bool,
        remain_time: u64,
        ipv6_enable: bool,
    }

    /// `{"instance_id"}`.
    #[derive(ToSchema)]
    pub struct CreatedInstance {
        #[schema(format = "uuid")]
        instance_id: String,
    }

    /// BatchRestartOrDeleteInstances: one result per instance, in order.
    #[derive(ToSchema)]
    pub struct BatchResults {
        results: Vec<BatchResult>,
    }

    #[derive(ToSchema)]
    pub struct BatchResult {
        #[schema(inline)]
        result: Outcome,
        instance: String,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum Outcome {
        Success,
        Failed,
    }

    /// ShowInstanceConfigs.
    #[derive(ToSchema)]
    pub struct ConfigList {
        kafka_configs: Vec<ConfigJson>,
    }

    #[derive(ToSchema)]
    pub struct ConfigJson {
        name: String,
        /// e.g. `1~168`, `true or false`, or the allowed words.
        valid_values: String,
        default_value: String,
        #[schema(inline)]
        config_type: ConfigType,
        value: String,
        #[schema(inline)]
        value_type: ValueType,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum ConfigType {
        Dynamic,
        Static,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum ValueType {
        Integer,
        Boolean,
        String,
    }

    /// ModifyInstanceConfigs: the task and how many dynamic and static configs it changes.
    #[derive(ToSchema)]
    pub struct ConfigsModified {
        job_id: String,
        dynamic_config: u64,
        static_config: u64,
    }

    /// UpdateInstanceAutoCreateTopic.
    #[derive(ToSchema)]
    pub struct AutoTopicChanged {
        job_id: String,
        enable_auto_topic: bool,
    }

    /// `{"job_id"}`.
    #[derive(serde::Serialize, ToSchema)]
    pub struct JobId {
        job_id: String,
    }

    /// `{"schedule_id"}`: the id the task will keep when it runs.
    #[derive(serde::Serialize, ToSchema)]
    pub struct ScheduleId {
        schedule_id: String,
    }

    /// `{"reassignment_time"}`: the estimate, in seconds.
    #[derive(serde::Serialize, ToSchema)]
    pub struct ReassignmentEstimate {
        reassignment_time: u64,
    }

    /// An immediate task's `{"job_id"}` or a scheduled one's `{"schedule_id"}`.
    #[derive(serde::Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum JobOrSchedule {
        Job(JobId),
        Schedule(ScheduleId),
    }

    /// As [`JobOrSchedule`], or the estimate when `time_estimate` is true.
    #[derive(serde::Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum ReassignOutcome {
        Job(JobId),
        Schedule(ScheduleId),
        Estimate(ReassignmentEstimate),
    }

    /// ShowUpgradeInstanceVersion.
    #[derive(ToSchema)]
    pub struct UpgradeVersions {
        current_version: String,
        latest_version: String,
    }

    /// The token's claims; the token itself is in `X-Subject-Token`.
    #[derive(ToSchema)]
    pub struct TokenCreated {
        #[schema(inline)]
        token: TokenClaims,
    }

    #[derive(ToSchema)]
    pub struct TokenClaims {
        /// `["hw_ak_sk"]`.
        methods: Vec<String>,
        issued_at: String,
        expires_at: String,
        #[schema(inline)]
        project: IdOnly,
        #[schema(inline)]
        user: TokenUser,
        #[schema(inline)]
        roles: Vec<RoleName>,
    }

    #[derive(ToSchema)]
    pub struct TokenUser {
        id: String,
        name: String,
    }

    #[derive(ToSchema)]
    pub struct RoleName {
        name: String,
    }
}
