//! What the Terraform provider reads back after each change (resourceDmsKafkaInstanceRead):
//! ListAvailableZones, ShowInstance's `charging_mode` and `cross_vpc_info`, ShowKafkaTags and
//! ShowKafkaCluster. tests/terraform/test_tofu.py runs the provider itself against them.

use std::collections::BTreeSet;

use kafka_tasks::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PROJECT, TestApp};

const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";
const UNKNOWN_INSTANCE: &str = "99999999-8888-7777-6666-555555555555";

fn create_body(extra: Value) -> Value {
    let mut body = json!({"name": "kafka-read", "engine_version": "2.7", "broker_num": 3,
                          "storage_space": 300, "product_id": "c6.2u4g.cluster"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

async fn created(app: &TestApp, extra: Value) -> String {
    let res = app.create_instance_with(create_body(extra)).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let id = res.json()["instance_id"].as_str().expect("instance_id").to_owned();
    app.wait_instance_status(&id, "RUNNING").await;
    id
}

/// The listener addresses of `cross_vpc_info`, checked for its shape: a JSON document in a string.
fn cross_vpc(shown: &Value) -> serde_json::Map<String, Value> {
    let text = shown["cross_vpc_info"].as_str().unwrap_or_else(|| panic!("cross_vpc_info is a string: {shown}"));
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        other => panic!("cross_vpc_info holds a JSON object: {other:?}"),
    }
}

per_engine! {
    #[tokio::test]
    async fn available_zones_are_the_ones_create_accepts() {
        let app = TestApp::spawn().await;
        let res = app.get("/v2/available-zones").await;
        assert_eq!(res.status, 200, "{}", res.text);
        let body = res.json();
        assert!(body["region_id"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
        let zones = body["available_zones"].as_array().expect("available_zones").clone();
        assert!(!zones.is_empty());
        for z in &zones {
            // DMS's types: port and resource_availability are strings, soldOut is camel-cased.
            for key in ["id", "code", "name", "port", "resource_availability"] {
                assert!(z[key].is_string(), "{key} in {z}");
            }
            for key in ["default_az", "soldOut", "ipv6_enable"] {
                assert!(z[key].is_boolean(), "{key} in {z}");
            }
            assert!(z["remain_time"].is_u64(), "{z}");
        }
        assert_eq!(zones.iter().filter(|z| z["default_az"] == true).count(), 1);
        let ids: Vec<String> = zones.iter().filter_map(|z| z["id"].as_str().map(str::to_owned)).collect();
        let inst = created(&app, json!({"available_zones": ids})).await;
        assert_eq!(app.show_instance(&inst).await.json()["available_zones"], json!(ids));

        // A zone it does not list, or a zone's code instead of its id, is refused; nothing is created.
        let code = zones[0]["code"].clone();
        for bad in [json!(["az-nowhere"]), json!([code]), json!([ids[0], "az-nowhere"])] {
            let res = app.create_instance_with(create_body(json!({"available_zones": bad}))).await;
            res.assert_error(400, "DMS.00400062");
            assert!(res.text.contains("available_zones"), "{}", res.text);
        }
        assert_eq!(app.get(&format!("/v2/{PROJECT}/instances")).await.json()["instance_num"], 1);

        // A read: a readonly key of any project may list the zones.
        let reader = app.credential(OTHER_PROJECT, "rita", Role::Readonly).await;
        assert_eq!(app.request_as(&reader, Method::GET, "/v2/available-zones", None).await.json(), body);
    }
}

per_engine! {
    #[tokio::test]
    async fn show_instance_is_pay_per_use_and_lists_cross_vpc_listeners_per_broker() {
        let app = TestApp::spawn().await;
        let inst = created(&app, json!({})).await;
        let shown = app.show_instance(&inst).await.json();
        assert_eq!(shown["charging_mode"], 1, "pay-per-use: deleted with DELETE, not unsubscribed");
        assert_eq!(shown["port"], 9092);
        let listeners = cross_vpc(&shown);
        let addresses: BTreeSet<&str> = shown["connect_address"].as_str().expect("connect_address").split(',').collect();
        assert_eq!(listeners.keys().map(String::as_str).collect::<BTreeSet<_>>(), addresses);
        let ids: BTreeSet<&str> = listeners.values().filter_map(|l| l["broker_id"].as_str()).collect();
        assert_eq!(ids, BTreeSet::from(["0", "1", "2"]));
        for (ip, l) in &listeners {
            assert_eq!(l["advertised_ip"], ip.as_str());
            assert_eq!(l["port"], 9011);
            assert!(l["port_id"].as_str().is_some_and(|p| uuid::Uuid::parse_str(p).is_ok()), "{l}");
        }
        assert_eq!(app.get(&format!("/v2/{PROJECT}/instances")).await.json()["instances"][0]["charging_mode"], 1);

        // Adding brokers adds listeners; the existing ones keep their addresses.
        let res = app.resize(&inst, json!({"oper_type": "horizontal", "new_broker_num": 5})).await;
        assert_eq!(res.status, 200, "{}", res.text);
        app.wait_instance_status(&inst, "RUNNING").await;
        let grown = cross_vpc(&app.show_instance(&inst).await.json());
        assert_eq!(grown.len(), 5);
        assert!(listeners.iter().all(|(ip, l)| grown.get(ip) == Some(l)), "{grown:?}");
    }
}

per_engine! {
    #[tokio::test]
    async fn an_instance_being_created_has_no_listeners_or_brokers_yet() {
        // Real step durations: the create task is still running when it is looked at.
        let app = TestApp::spawn_with(&["--time-scale", "1"]).await;
        let res = app.create_instance_with(create_body(json!({}))).await;
        let inst = res.json()["instance_id"].as_str().expect("instance_id").to_owned();
        let shown = app.show_instance(&inst).await.json();
        assert_eq!((shown["status"].clone(), shown["charging_mode"].clone()), (json!("CREATING"), json!(1)));
        assert!(shown.get("cross_vpc_info").is_none() && shown.get("connect_address").is_none(), "{shown}");
        let cluster = app.get(&format!("{}/manage/cluster", app.instance_path(&inst))).await;
        assert_eq!(cluster.json(), json!({"cluster": {"brokers": []}}));
    }
}

per_engine! {
    #[tokio::test]
    async fn the_cluster_lists_each_broker_at_its_listener_address() {
        let app = TestApp::spawn().await;
        let inst = created(&app, json!({})).await;
        let res = app.get(&format!("{}/manage/cluster", app.instance_path(&inst))).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let brokers = res.json()["cluster"]["brokers"].as_array().expect("brokers").clone();
        let listeners = cross_vpc(&app.show_instance(&inst).await.json());
        assert_eq!(brokers.len(), 3);
        for b in &brokers {
            let host = b["host"].as_str().expect("host");
            assert_eq!(listeners[host]["broker_id"], b["broker_id"], "{b}");
            assert_eq!((b["port"].clone(), b["health"].clone()), (json!(9092), json!(true)));
        }
    }
}

per_engine! {
    #[tokio::test]
    async fn tags_given_at_creation_are_shown() {
        let app = TestApp::spawn().await;
        let tags = json!([{"key": "owner", "value": "team-a"}, {"key": "env", "value": ""}]);
        let tagged = created(&app, json!({"tags": tags})).await;
        let res = app.get(&format!("/v2/{PROJECT}/kafka/{tagged}/tags")).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.json(), json!({ "tags": tags }));
        assert_eq!(app.show_instance(&tagged).await.json()["tags"], tags);
        let plain = created(&app, json!({})).await;
        assert_eq!(app.get(&format!("/v2/{PROJECT}/kafka/{plain}/tags")).await.json(), json!({"tags": []}));

        // Bad tags are refused and create nothing.
        for bad in [json!([{"key": "k"}, {"key": "k"}]), json!([{"key": "\u{1b}[2J"}]), json!({"key": "k"})] {
            let res = app.create_instance_with(create_body(json!({"tags": bad}))).await;
            res.assert_error(400, "DMS.00400062");
            assert!(res.text.contains("tags"), "{}", res.text);
        }
        assert_eq!(app.get(&format!("/v2/{PROJECT}/instances")).await.json()["instance_num"], 2);
    }
}

per_engine! {
    #[tokio::test]
    async fn tags_and_cluster_of_a_missing_or_foreign_instance_answer_as_show_instance_does() {
        let app = TestApp::spawn().await;
        let inst = created(&app, json!({})).await;
        let routes =
            |id: &str| [format!("/v2/{PROJECT}/kafka/{id}/tags"), format!("/v2/{PROJECT}/instances/{id}/manage/cluster")];
        let missing = app.show_instance(UNKNOWN_INSTANCE).await;
        let (status, code) = (missing.status.as_u16(), missing.json()["error_code"].clone());
        assert_eq!(status, 404);
        for path in routes(UNKNOWN_INSTANCE) {
            app.get(&path).await.assert_error(404, code.as_str().expect("code"));
        }
        for path in routes("not-an-instance") {
            app.get(&path).await.assert_error(400, "DMS.00400030");
        }
        // A readonly key reads them; another project's key is refused at the gateway, and in its
        // own project the instance is not there.
        let reader = app.credential(PROJECT, "rita", Role::Readonly).await;
        let other = app.credential(OTHER_PROJECT, "bob", Role::Admin).await;
        for path in routes(&inst) {
            assert_eq!(app.request_as(&reader, Method::GET, &path, None).await.status, 200);
            app.request_as(&other, Method::GET, &path, None).await.assert_error(403, "APIGW.0302");
            let theirs = path.replace(PROJECT, OTHER_PROJECT);
            app.request_as(&other, Method::GET, &theirs, None).await.assert_error(404, code.as_str().expect("code"));
        }
        // Unsigned: 401.
        for path in routes(&inst).iter().chain([&"/v2/available-zones".to_owned()]) {
            let res = app.send(Method::GET, path, None, &[]).await;
            assert_eq!(res.status, 401, "{path}: {}", res.text);
        }
    }
}
