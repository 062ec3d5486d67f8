//! The DMS/APIGW error body, as every refusal carries it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The DMS/APIGW error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `DMS.*` or `APIGW.*`.
    #[schema(example = "DMS.00404022")]
    pub error_code: String,
    #[schema(example = "This instance does not exist.")]
    pub error_msg: String,
    /// Only on `APIGW.*` errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// An error as the API sends it: a gateway (`APIGW.*`) error carries the request's id, as
    /// Huawei's API gateway adds it; a DMS one does not.
    pub fn new(code: &str, msg: &str, request_id: impl FnOnce() -> String) -> Self {
        ErrorBody {
            error_code: code.to_owned(),
            error_msg: msg.to_owned(),
            request_id: code.starts_with("APIGW").then(request_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gateway_error_names_the_request() {
        let id = || "0123456789abcdef0123456789abcdef".to_owned();
        let dms = serde_json::to_string(&ErrorBody::new("DMS.00404022", "gone", id)).unwrap_or_default();
        assert_eq!(dms, r#"{"error_code":"DMS.00404022","error_msg":"gone"}"#);
        let gateway = ErrorBody::new("APIGW.0301", "who?", id);
        assert!(crate::tests::sorted(&gateway));
        assert_eq!(gateway.request_id, Some(id()));
    }
}
