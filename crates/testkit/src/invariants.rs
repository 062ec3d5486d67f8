//! What must hold of an instance once every task has ended, whatever crashed meanwhile: shared by
//! the crash loop (SQLite) and the cluster test (PostgreSQL).
#![allow(dead_code)]

use std::collections::HashSet;

use serde_json::Value;

pub const TERMINAL: [&str; 3] = ["SUCCESS", "FAILED", "CANCELLED"];
/// Instance states that exist only while a task runs.
pub const TRANSIENT: [&str; 5] = ["CREATING", "RESTARTING", "EXTENDING", "UPGRADING", "DELETING"];

pub fn is_terminal(task: &Value) -> bool {
    TERMINAL.contains(&task["status"].as_str().unwrap_or(""))
}

/// A task's `params`, which the API carries as a JSON string.
pub fn params(task: &Value) -> Value {
    task["params"].as_str().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null)
}

/// The impossible states of one settled instance (`doc` as ShowInstance/ListInstances give it,
/// `tasks` every record of its ListBackgroundTasks). `pool_gb` is the simulated resource pool;
/// `deleted_upgrades` counts successful upgrade tasks of it that were deleted.
pub fn instance_problems(doc: &Value, tasks: &[Value], pool_gb: u64, deleted_upgrades: usize) -> Vec<String> {
    let mut v = vec![];
    let inst = doc["instance_id"].as_str().unwrap_or_default();
    let status = doc["status"].as_str().unwrap_or_default();
    // Not busy, and in no state that exists only while a task runs.
    if !doc["task"].is_null() {
        let holder = tasks.iter().find(|t| t["id"] == doc["task"]).map_or_else(
            || "a task not among its background tasks".to_owned(),
            |t| format!("{} {} {}", t["name"], t["status"], t["params"]),
        );
        v.push(format!("instance {inst} still busy with {} ({holder}) after every task ended", doc["task"]));
    }
    if TRANSIENT.contains(&status) {
        v.push(format!("instance {inst} left {status} after every task ended"));
    }
    // Its creation decides what it can be.
    let creates: Vec<&Value> = tasks.iter().filter(|t| t["name"] == "createInstance").collect();
    let [create] = creates.as_slice() else {
        v.push(format!("instance {inst} has {} createInstance tasks", creates.len()));
        return v;
    };
    match create["status"].as_str().unwrap_or_default() {
        "FAILED" => {
            if status != "CREATEFAILED" {
                v.push(format!("instance {inst} is {status} though its createInstance task FAILED"));
            }
            for t in tasks.iter().filter(|t| t["status"] == "SUCCESS") {
                v.push(format!("instance {inst} was never created, yet {} {} succeeded on it", t["name"], t["id"]));
            }
        }
        "SUCCESS" if status == "CREATEFAILED" => {
            v.push(format!("instance {inst} is CREATEFAILED though its createInstance task succeeded"));
        }
        _ => {}
    }
    let storage = doc["storage_space"].as_u64().unwrap_or(0);
    if status == "RUNNING" && storage > pool_gb {
        v.push(format!(
            "instance {inst} is RUNNING with {storage} GB, more than the pool ever allocates ({pool_gb} GB)"
        ));
    }
    let created = params(create)["storage_space"].as_u64().unwrap_or(0);
    if storage < created {
        v.push(format!("instance {inst} shrank from {created} GB to {storage} GB"));
    }
    // Versions go 2.7 → 3.x once: a second successful upgrade ran on a stale check.
    let upgrades =
        tasks.iter().filter(|t| t["name"] == "upgradeInstance" && t["status"] == "SUCCESS").count() + deleted_upgrades;
    if upgrades > 1 {
        v.push(format!("instance {inst}: {upgrades} successful upgrades from 2.7"));
    }
    v
}

/// Whether a paged view agrees with its own count: `count` as the first page said, `items`
/// every record of every page.
pub fn count_problem(what: &str, count: u64, items: &[Value]) -> Option<String> {
    let ids: HashSet<&str> = items.iter().filter_map(|t| t["id"].as_str()).collect();
    (count != items.len() as u64 || ids.len() != items.len())
        .then(|| format!("{what}: count {count}, {} records paged through, {} distinct", items.len(), ids.len()))
}
