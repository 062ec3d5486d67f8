//! Project isolation by construction: every route whose path names a project refuses another
//! project's caller at the gateway (`403 APIGW.0302`), before the handler reads anything else.
//! The routes come from the registry the router is built from, so a route added later is walked
//! too.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PROJECT, TestApp};
use kafka_tasks::domain::Role;

const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";

/// Every `(method, template)` the router serves behind authentication, aliases included, as
/// the registry has them (test control's only exist with `--test-control`).
pub fn routes() -> Vec<(Method, String)> {
    let api = kafka_tasks::http::routes::api().registered;
    api.into_iter().map(|r| (Method::from_bytes(r.method.as_str().as_bytes()).expect("method"), r.path)).collect()
}

per_engine! {
    #[tokio::test]
    async fn every_route_naming_a_project_refuses_another_projects_caller() {
        let app = TestApp::spawn().await;
        let inst = app.create_instance().await;
        let task = app.finished_task(&inst, true).await;
        let other = app.credential(OTHER_PROJECT, "bob", Role::Admin).await;
        let before = app.show_instance(&inst).await.json();

        let all = routes();
        let with_project: Vec<_> = all.iter().filter(|(_, t)| t.contains("{project_id}")).collect();
        // Not a vacuous pass: the documented task and instance routes.
        assert!(with_project.len() >= 20, "only {} routes found: {all:?}", with_project.len());
        for (method, template) in with_project {
            // Real ids of the project, and ids that do not even parse: the project is refused first.
            for (instance, task) in [(inst.as_str(), task.as_str()), ("not-an-instance", "not-a-task")] {
                let path =
                    template.replace("{project_id}", PROJECT).replace("{instance_id}", instance).replace("{task_id}", task);
                // A body that would do something, and one that is not even an object.
                for body in [json!({"action": "delete", "instances": [inst.as_str()], "name": "taken"}), json!([])] {
                    let body = (*method != Method::GET && *method != Method::DELETE).then(|| body.to_string());
                    let res = app.request_as(&other, method.clone(), &path, body).await;
                    assert_eq!(
                        (res.status.as_u16(), res.json()["error_code"].as_str().map(str::to_owned)),
                        (403, Some("APIGW.0302".to_owned())),
                        "{method} {path}: {}",
                        res.text
                    );
                }
            }
        }
        assert_eq!(app.show_instance(&inst).await.json(), before, "another project changed nothing");
    }
}
