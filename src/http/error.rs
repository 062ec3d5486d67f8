//! The one place API errors become responses: HTTP status plus `{"error_code","error_msg"}`
//! (and `request_id` for gateway errors, as Huawei's API gateway adds it).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::Invalid;
use crate::storage::StoreError;

tokio::task_local! {
    /// The id of the request being handled, for error bodies and logs.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid project id")]
    InvalidProjectId,
    #[error("invalid instance id")]
    InvalidInstanceId,
    #[error("invalid task id")]
    InvalidTaskId,
    #[error("invalid {0} parameter")]
    InvalidParam(&'static str),
    #[error("invalid timestamp")]
    InvalidTimestamp,
    #[error("invalid request body")]
    InvalidBody,
    #[error("task still running")]
    TaskRunning,
    #[error("instance state does not allow the operation")]
    InstanceState,
    #[error("role lacks permission")]
    Forbidden,
    #[error("no such URL")]
    NoSuchUrl,
    #[error("no such instance")]
    NoInstance,
    #[error("no such task")]
    NoTask,
    /// An instance with no cluster binding (connected mode's extension).
    #[error("no cluster binding")]
    NoClusterBinding,
    /// No test-control snapshot of that name (`serve --test-control`).
    #[error("no such snapshot")]
    NoSnapshot,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 401 from the gateway, with a detail that helps a real user and reveals no secret.
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    #[error("credential not valid for this project")]
    WrongProject,
    #[error("request entity too large")]
    TooLarge,
    #[error("internal error: {0}")]
    Internal(String),
    /// 429 from the gateway; the seconds to wait go in `Retry-After` (see the auth layer).
    #[error("throttled")]
    Throttled(u64),
    /// A query parameter given more than once: which of its values a handler would read is
    /// not what the signature pins down.
    #[error("duplicate query parameter {0}")]
    DuplicateParam(String),
    /// A query parameter the operation does not take, where ignoring it could widen what it
    /// does (a bulk delete's mistyped filter).
    #[error("unknown query parameter {0}")]
    UnknownParam(String),
    /// The database cannot serve now (down, full, locked past its timeout); the cause is logged.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The memory budget for request bodies is spent.
    #[error("server busy")]
    Busy,
    /// The body did not arrive within the body-read timeout.
    #[error("request body timeout")]
    BodyTimeout,
    #[error("request URI too long")]
    UriTooLong,
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// A cluster binding that cannot be used: the cluster does not answer, refuses the
    /// credentials, or the binding names what the server cannot read. The reason is the
    /// admin's to see (the binding is theirs).
    #[error("the cluster cannot be used: {0}")]
    ClusterUnusable(String),
    /// A test-control request that cannot be done, and why (`serve --test-control`).
    #[error("test control refused: {0}")]
    ControlRefused(String),
    /// A request about a bound instance that its cluster shows cannot be done (a topic or broker
    /// it does not have): the cluster's reason.
    #[error("the cluster refuses {0}: {1}")]
    ClusterRefuses(&'static str, String),
    /// A kernel upgrade of an instance already on the newest build: DMS's state refusal.
    #[error("the instance already runs the latest kernel")]
    AlreadyLatestKernel,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The log line (see `into_response`) shows the whole chain, down to the driver's error.
            e @ StoreError::Unavailable { .. } => ApiError::Unavailable(e.chain()),
            e => ApiError::Internal(e.chain()),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        match e {
            Invalid::Param(name) => ApiError::InvalidParam(name),
            Invalid::Timestamp => ApiError::InvalidTimestamp,
            Invalid::Body => ApiError::InvalidBody,
            Invalid::InstanceState => ApiError::InstanceState,
            Invalid::AlreadyLatest => ApiError::AlreadyLatestKernel,
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidProjectId | InvalidInstanceId | InvalidTaskId | InvalidParam(_) | InvalidTimestamp | InvalidBody
            | TaskRunning | InstanceState => StatusCode::BAD_REQUEST,
            Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Forbidden | WrongProject => StatusCode::FORBIDDEN,
            NoSuchUrl | NoInstance | NoTask | NoClusterBinding | NoSnapshot => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            DuplicateParam(_) | UnknownParam(_) => StatusCode::BAD_REQUEST,
            Unavailable(_) | Busy => StatusCode::SERVICE_UNAVAILABLE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            AlreadyLatestKernel | ClusterUnusable(_) | ControlRefused(_) | ClusterRefuses(..) => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// The DMS (or APIGW) error code and message.
    pub fn code_and_message(&self) -> (&'static str, String) {
        use ApiError::*;
        match self {
            InvalidProjectId => ("DMS.00400002", "The project ID format is invalid.".into()),
            TaskRunning => ("DMS.00400017", "This DMS instance job task is still running.".into()),
            InstanceState => ("DMS.00400026", "This operation is not allowed due to the instance status.".into()),
            InvalidInstanceId => ("DMS.00400030", "Invalid DMS instance id. The id must be a uuid.".into()),
            InvalidParam(name) => ("DMS.00400062", format!("Invalid {name} parameter in the request.")),
            InvalidTaskId => ("DMS.00400070", "Invalid task ID format.".into()),
            InvalidTimestamp => ("DMS.00400142", "Timestamp is invalid.".into()),
            InvalidBody => ("DMS.00400800", "Invalid request parameter. Check the request parameter.".into()),
            Forbidden => ("DMS.00403003", "This role does not have the permissions to perform this operation.".into()),
            NoSuchUrl => ("DMS.00404001", "The requested URL does not exist.".into()),
            NoInstance => ("DMS.00404022", "This instance does not exist.".into()),
            NoTask => ("DMS.00404070", "The background task does not exist.".into()),
            NoClusterBinding => ("DMS.00404090", "This instance is not bound to a Kafka cluster.".into()),
            NoSnapshot => ("DMS.00404800", "The test-control snapshot does not exist.".into()),
            MethodNotAllowed => ("DMS.00405001", "This request method is not allowed.".into()),
            Internal(_) => ("DMS.00500000", "Internal service error.".into()),
            Unauthenticated(detail) => ("APIGW.0301", format!("Incorrect IAM authentication information: {detail}")),
            WrongProject => ("APIGW.0302", "The IAM user is not authorized to access the API.".into()),
            TooLarge => ("APIGW.0201", "Request entity too large.".into()),
            Throttled(_) => ("APIGW.0308", "The throttling threshold has been reached.".into()),
            DuplicateParam(name) => {
                ("DMS.00400062", format!("Invalid {name} parameter in the request: it is given more than once."))
            }
            UnknownParam(name) => {
                ("DMS.00400062", format!("Invalid {name} parameter in the request: this operation does not take it."))
            }
            Unavailable(_) => ("DMS.00503000", "The database is temporarily unavailable. Try again later.".into()),
            Busy => ("DMS.00503001", "The server is busy. Try again later.".into()),
            BodyTimeout => ("DMS.00408000", "The request body was not received in time.".into()),
            UriTooLong => ("DMS.00414000", "The request URI is too long.".into()),
            HeadersTooLarge => ("DMS.00431000", "The request header fields are too large.".into()),
            ClusterRefuses(name, why) => {
                ("DMS.00400062", format!("Invalid {name} parameter in the request: the cluster shows {why}"))
            }
            ClusterUnusable(why) => (
                "DMS.00400062",
                format!("Invalid bootstrap_servers parameter in the request: the cluster cannot be used: {why}"),
            ),
            ControlRefused(why) => ("DMS.00400800", format!("Invalid request parameter: {why}")),
            AlreadyLatestKernel => (
                "DMS.00400026",
                "This operation is not allowed due to the instance status: it already runs the latest kernel version."
                    .into(),
            ),
        }
    }
}

impl ApiError {
    /// One error of each kind: the OpenAPI document's error responses list their codes
    /// ([`ApiError::meaning`] says what each means there). A new kind goes here and in
    /// `meaning`'s match, which does not compile without it.
    pub fn every_kind() -> Vec<ApiError> {
        use ApiError::*;
        let s = String::new;
        vec![
            InvalidProjectId,
            InvalidInstanceId,
            InvalidTaskId,
            InvalidParam("name"),
            DuplicateParam(s()),
            UnknownParam(s()),
            ClusterRefuses("name", s()),
            ClusterUnusable(s()),
            InvalidTimestamp,
            InvalidBody,
            ControlRefused(s()),
            TaskRunning,
            InstanceState,
            AlreadyLatestKernel,
            Unauthenticated(s()),
            WrongProject,
            Forbidden,
            NoInstance,
            NoTask,
            NoClusterBinding,
            NoSnapshot,
            NoSuchUrl,
            MethodNotAllowed,
            BodyTimeout,
            TooLarge,
            UriTooLong,
            Throttled(1),
            HeadersTooLarge,
            Internal(s()),
            Unavailable(s()),
            Busy,
        ]
    }

    /// What the document says this kind of error means (empty: nothing beyond what another
    /// kind of the same code says); kinds that share a code are listed under it together.
    pub fn meaning(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidProjectId => "project id",
            InvalidInstanceId => "instance id",
            InvalidTaskId => "task id",
            InvalidParam(_) => "a parameter",
            DuplicateParam(_) => "a query key given twice",
            UnknownParam(_) => "a query key the operation does not take",
            ClusterRefuses(..) => "a topic or broker the bound cluster does not have",
            ClusterUnusable(_) => "a cluster binding that cannot be used",
            InvalidTimestamp => "timestamp",
            InvalidBody => "body",
            // Only with `--test-control`: the plain document does not name test control (its
            // code is listed under the body's meaning).
            ControlRefused(_) => "",
            TaskRunning => "task still running",
            InstanceState => "instance state",
            AlreadyLatestKernel => "already on the latest kernel",
            Unauthenticated(_) => "missing, malformed, expired or wrong credentials",
            WrongProject => "credential of another project",
            Forbidden => "role lacks permission",
            NoInstance => "no such instance",
            NoTask => "no such task",
            NoClusterBinding => "no cluster binding",
            NoSnapshot => "no such snapshot",
            NoSuchUrl => "no such URL",
            MethodNotAllowed => "a method the path does not serve",
            BodyTimeout => "the request body did not arrive in time",
            TooLarge => "request body too large",
            UriTooLong => "request URI too long",
            Throttled(_) => "throttled",
            HeadersTooLarge => "request header fields too large",
            Internal(_) => "internal error (the cause is logged with the request id, never sent)",
            Unavailable(_) => "database unavailable",
            Busy => "server busy",
        }
    }
}

/// The codes a response of `status` can carry, in [`ApiError::every_kind`]'s order, each with
/// what it means (the meanings of the kinds that share it, joined).
pub fn codes_of(status: StatusCode) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for kind in ApiError::every_kind().into_iter().filter(|k| k.status() == status) {
        let (code, _) = kind.code_and_message();
        match out.iter_mut().find(|(c, _)| *c == code) {
            Some((_, meaning)) if !kind.meaning().is_empty() => {
                meaning.push_str(", or ");
                meaning.push_str(kind.meaning());
            }
            Some(_) => {}
            None => out.push((code, kind.meaning().to_owned())),
        }
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = self;
        let status = this.status();
        let (code, msg) = this.code_and_message();
        match &this {
            ApiError::Internal(cause) => {
                crate::limited!(error, cause, request_id = %current_request_id(), %cause, "internal error");
            }
            ApiError::Unavailable(cause) => {
                crate::limited!(warn, cause, request_id = %current_request_id(), %cause, "database unavailable");
            }
            _ => {}
        }
        let body = crate::wire::error::ErrorBody::new(code, &msg, current_request_id);
        let mut res = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_its_code_with_a_meaning() {
        let kinds = ApiError::every_kind();
        let mut seen = std::collections::HashSet::new();
        for kind in &kinds {
            assert!(seen.insert(std::mem::discriminant(kind)), "{kind:?} is listed twice");
            let (code, _) = kind.code_and_message();
            let listed = codes_of(kind.status());
            assert!(listed.iter().any(|(c, m)| *c == code && !m.is_empty()), "{kind:?}: {listed:?}");
        }
        let bad = codes_of(StatusCode::BAD_REQUEST);
        let param = bad.iter().find(|(code, _)| *code == "DMS.00400062").map(|(_, m)| m.as_str());
        assert!(param.is_some_and(|m| m.starts_with("a parameter, or a query key given twice")), "{bad:?}");
        assert_eq!(codes_of(StatusCode::URI_TOO_LONG), [("DMS.00414000", "request URI too long".to_owned())]);
    }

    #[test]
    fn sqlite_errors_keep_the_drivers_error_and_the_api_logs_it() {
        use crate::storage::StoreError;
        for (code, kind, status) in
            [(rusqlite::ffi::SQLITE_BUSY, "unavailable", 503), (rusqlite::ffi::SQLITE_CONSTRAINT, "backend", 500)]
        {
            let e = StoreError::from(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None));
            assert_eq!(e.kind(), kind);
            assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<rusqlite::Error>()), "{e:?}");
            let driver = rusqlite::ffi::Error::new(code).to_string();
            assert!(e.chain().ends_with(&driver), "{} does not end with {driver}", e.chain());
            let api = ApiError::from(e);
            assert_eq!(api.status().as_u16(), status);
            let (ApiError::Unavailable(logged) | ApiError::Internal(logged)) = api else { panic!("{api:?}") };
            assert!(logged.contains(&driver), "{logged}");
        }
    }
}
