//! The OpenAPI document cannot drift from the router: every `(method, path)` the registry
//! registers is in the served document, every documented one is registered and answered by the
//! live router (not its 404/405 fallbacks), and the document is public.
//! Live responses against the document's schemas: `tests/openapi/conformance.py`.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;

/// Every `(METHOD, path)` the registry registers on a server without `--test-control`
/// (test control's are documented only with it; tests/api/control.rs checks that document).
/// The console's pages are HTML for people, not API operations, and are not registered there
/// (see docs/decisions.md, "OpenAPI").
fn registered() -> BTreeSet<(String, String)> {
    let routes = kafka_tasks::http::routes::api().registered.into_iter();
    routes.chain(kafka_tasks::http::routes::public().registered).map(|r| (r.method.to_string(), r.path)).collect()
}

/// Every `(METHOD, path)` the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

async fn document(app: &TestApp) -> Value {
    // No credentials: the document is public.
    let res = app.send(Method::GET, "/openapi.json", None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    res.json()
}

per_engine! {
    #[tokio::test]
    async fn the_openapi_document_is_public_and_is_openapi_3() {
        let app = TestApp::spawn().await;
        let doc = document(&app).await;
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["aksk"]["name"], "Authorization");
        assert_eq!(schemes["token"]["name"], "X-Auth-Token");
        assert_eq!(doc["components"]["schemas"]["ErrorBody"]["required"], serde_json::json!(["error_code", "error_msg"]));
        let show = &doc["paths"]["/v2/{project_id}/instances/{instance_id}/tasks/{task_id}"]["get"]["responses"];
        assert!(show["200"]["headers"]["X-Request-Id"].is_object(), "{show}");
        assert!(doc["components"]["responses"]["Error404"]["headers"]["X-Request-Id"].is_object());
    }
}

per_engine! {
    #[tokio::test]
    async fn every_registered_route_is_documented_and_every_documented_one_is_registered() {
        let app = TestApp::spawn().await;
        let doc = document(&app).await;
        let registered = registered();
        // The registry is not empty (not a vacuous pass): the seven task endpoints and more.
        assert!(registered.len() >= 25, "only {} routes found: {registered:?}", registered.len());
        let documented = documented(&doc);
        let missing: Vec<_> = registered.difference(&documented).collect();
        assert!(missing.is_empty(), "registered but not in /openapi.json: {missing:?}");
        let extra: Vec<_> = documented.difference(&registered).collect();
        assert!(extra.is_empty(), "in /openapi.json but not registered: {extra:?}");
    }
}

/// A path template with placeholder ids of the right shapes.
fn concrete(template: &str) -> String {
    template
        .replace("{project_id}", crate::helpers::PROJECT)
        .replace("{instance_id}", "00000000-0000-4000-8000-000000000000")
        .replace("{task_id}", "0123456789abcdef0123456789abcdef")
}

per_engine! {
    #[tokio::test]
    async fn the_live_router_answers_every_documented_operation() {
        let app = TestApp::spawn().await;
        let doc = document(&app).await;
        for (method, path) in documented(&doc) {
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let res = app.send(method.clone(), &concrete(&path), None, &[]).await;
            let code = serde_json::from_str::<Value>(&res.text).ok().map(|v| v["error_code"].clone());
            // The router's fallbacks: an unknown path, or a method the path does not serve.
            let fallback =
                res.status == StatusCode::METHOD_NOT_ALLOWED || (code == Some("DMS.00404001".into()) && path != "/metrics");
            assert!(
                !fallback,
                "{method} {path} is documented but the router does not serve it: {} {}",
                res.status, res.text
            );
            let operation = &doc["paths"][&path][method.as_str().to_lowercase()];
            let authenticated = path.starts_with("/v2/") || path.starts_with("/v3/");
            if authenticated {
                // Without credentials a routed operation answers 401, as its document says.
                assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{method} {path}: {}", res.text);
                assert!(operation["security"].is_array(), "{method} {path} documents no security");
            } else {
                assert!(operation.get("security").is_none(), "{method} {path} is public but documents security");
            }
            assert!(
                operation["responses"].get(res.status.as_str()).is_some(),
                "{method} {path} answered {} which it does not document",
                res.status
            );
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn operation_ids_are_unique_and_name_the_dms_operations() {
        let app = TestApp::spawn().await;
        let doc = document(&app).await;
        let mut ids = BTreeSet::new();
        for (method, path) in documented(&doc) {
            let id = doc["paths"][&path][method.to_lowercase()]["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        }
        for dms in [
            "ListBackgroundTasks",
            "ShowBackgroundTask",
            "DeleteBackgroundTask",
            "ShowBackgroundTaskProgress",
            "ListScheduledTasks",
            "UpdateScheduledTask",
            "DeleteScheduledTask",
            "UpdateInstance",
            "ShowUpgradeInstanceVersion",
        ] {
            assert!(ids.contains(dms), "{dms} is not documented");
        }
    }
}
