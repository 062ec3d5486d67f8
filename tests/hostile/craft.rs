//! Generators of hostile requests: methods, paths (ids, percent-encoding, `%00`, `..`, overlong
//! segments, unicode), query strings (duplicate and malformed keys and values), bodies (invalid
//! JSON, wrong types, huge numbers, deep nesting) and headers.
//!
//! One rule keeps the database check meaningful: a generated request never asks for a change the
//! service should make. Every body of a mutating route breaks at least one of its rules, a
//! DELETE never names a record that could be deleted, and a reschedule never carries a single
//! valid value; only a *duplicated* query key may hide a valid value behind an invalid one,
//! which the service must refuse.

use serde_json::{Value, json};

use crate::rng::Rng;

/// The records the hostile requests aim at, made before the run.
#[derive(Debug, Clone)]
pub struct Targets {
    pub project: String,
    /// A RUNNING instance (2.7, 3 brokers, 300 GB, product `c6.2u4g.cluster`).
    pub running: String,
    /// A CREATEFAILED instance.
    pub failed: String,
    /// Ended tasks of `running`: read, never deleted.
    pub done_tasks: Vec<String>,
    /// A scheduled task of `running`, due in a day: neither deletable nor movable by a valid request.
    pub waiting: String,
    /// A token of an admin key, for `X-Auth-Token`.
    pub token: String,
    pub product: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ListTasks,
    ShowTask,
    DeleteTask,
    Progress,
    ListScheduled,
    UpdateScheduled,
    DeleteScheduled,
    Create,
    ListInstances,
    Action,
    ShowInstance,
    DeleteInstance,
    ShowConfigs,
    ModifyConfigs,
    AutoTopic,
    Extend,
    ExtendAlt,
    Reassign,
    Upgrade,
    Tokens,
    CreatePostPaid,
    ReassignAlt,
    UpgradeInfo,
    UpdateInstance,
    Health,
    Ready,
    Metrics,
    Console,
}

pub const API_ROUTES: &[Route] = &[
    Route::ListTasks,
    Route::ShowTask,
    Route::DeleteTask,
    Route::Progress,
    Route::ListScheduled,
    Route::UpdateScheduled,
    Route::DeleteScheduled,
    Route::Create,
    Route::ListInstances,
    Route::Action,
    Route::ShowInstance,
    Route::DeleteInstance,
    Route::ShowConfigs,
    Route::ModifyConfigs,
    Route::AutoTopic,
    Route::Extend,
    Route::ExtendAlt,
    Route::Reassign,
    Route::Upgrade,
    Route::Tokens,
    Route::CreatePostPaid,
    Route::ReassignAlt,
    Route::UpgradeInfo,
    Route::UpdateInstance,
];

pub const OPEN_ROUTES: &[Route] = &[Route::Health, Route::Ready, Route::Metrics, Route::Console];

impl Route {
    pub fn method(self) -> &'static str {
        use Route::*;
        match self {
            ListTasks | ShowTask | Progress | ListScheduled | ListInstances | ShowInstance | ShowConfigs
            | UpgradeInfo | Health | Ready | Metrics | Console => "GET",
            DeleteTask | DeleteScheduled | DeleteInstance => "DELETE",
            UpdateScheduled | ModifyConfigs | UpdateInstance => "PUT",
            Create | CreatePostPaid | Action | AutoTopic | Extend | ExtendAlt | Reassign | ReassignAlt | Upgrade
            | Tokens => "POST",
        }
    }

    fn template(self) -> &'static str {
        use Route::*;
        match self {
            ListTasks => "/v2/{p}/instances/{i}/tasks",
            ShowTask | DeleteTask => "/v2/{p}/instances/{i}/tasks/{t}",
            Progress => "/v2/{p}/instances/{i}/tasks/{t}/progress",
            ListScheduled => "/v2/{p}/instances/{i}/scheduled-tasks",
            UpdateScheduled | DeleteScheduled => "/v2/{p}/instances/{i}/scheduled-tasks/{t}",
            Create => "/v2/kafka/{p}/instances",
            ListInstances => "/v2/{p}/instances",
            Action => "/v2/{p}/instances/action",
            ShowInstance | DeleteInstance => "/v2/{p}/instances/{i}",
            ShowConfigs | ModifyConfigs => "/v2/{p}/instances/{i}/configs",
            AutoTopic => "/v2/{p}/instances/{i}/autotopic",
            Extend => "/v2/{p}/kafka/instances/{i}/extend",
            ExtendAlt => "/v2/kafka/{p}/instances/{i}/extend",
            Reassign => "/v2/{p}/kafka/instances/{i}/reassign",
            Upgrade | UpgradeInfo => "/v2/{p}/kafka/instances/{i}/upgrade",
            Tokens => "/v3/auth/tokens",
            CreatePostPaid => "/v2/{p}/kafka/instances",
            ReassignAlt => "/v2/kafka/{p}/instances/{i}/reassign",
            UpdateInstance => "/v2/{p}/instances/{i}",
            Health => "/healthz",
            Ready => "/readyz",
            Metrics => "/metrics",
            Console => "/console",
        }
    }

    pub fn mutating(self) -> bool {
        self.method() != "GET"
    }
}

/// A request before it is signed and sent.
#[derive(Debug, Clone)]
pub struct Draft {
    pub route: Route,
    pub method: String,
    /// Path and query, exactly as sent (and signed).
    pub target: String,
    pub body: Vec<u8>,
    /// Extra headers, never among the signed ones.
    pub headers: Vec<(String, Vec<u8>)>,
    pub label: &'static str,
}

const HEX: &[u8] = b"0123456789abcdef";

pub fn hex_id(rng: &mut Rng, len: usize) -> String {
    (0..len).map(|_| HEX[rng.index(16)] as char).collect()
}

pub fn uuid(rng: &mut Rng) -> String {
    let h = hex_id(rng, 32);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

const WEIRD_IDS: &[&str] = &[
    "",
    "x",
    "0",
    "-1",
    "null",
    "undefined",
    "..",
    ".",
    "%00",
    "a%00b",
    "%zz",
    "%",
    "%4",
    "%C3%A9",
    "%FF%FE",
    "%2F",
    "%2e%2e",
    "..%2F..%2Fetc%2Fpasswd",
    "%E2%80%AE",
    "%F0%9F%98%80",
    "{instance_id}",
    "*",
    "+",
    "%20",
    ";x=1",
    "00000000-0000-0000-0000-000000000000",
    "ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZZZZZZZZZ",
    "0123456789ABCDEF0123456789ABCDEF",
    "0123456789abcdef0123456789abcdef0",
    "é",
    "\u{1F600}",
    "\u{202E}",
    "\\",
    "'%20OR%201=1--",
    "$(id)",
];

pub fn weird_id(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => "a".repeat(rng.range(300, 20_000) as usize),
        1 => {
            let n = rng.range(1, 64) as usize;
            hex_id(rng, n)
        }
        2 => {
            let u = uuid(rng);
            u.to_uppercase()
        }
        _ => rng.pick(WEIRD_IDS).to_string(),
    }
}

fn project(rng: &mut Rng, t: &Targets) -> String {
    match rng.below(100) {
        0..82 => t.project.clone(),
        82..90 => hex_id(rng, 32),
        _ => weird_id(rng),
    }
}

/// An instance id; a real one only where no valid request on this route changes anything.
fn instance(rng: &mut Rng, t: &Targets, real_ok: bool) -> String {
    match rng.below(100) {
        0..50 if real_ok => t.running.clone(),
        50..65 if real_ok => t.failed.clone(),
        0..80 => uuid(rng),
        _ => weird_id(rng),
    }
}

fn task(rng: &mut Rng, t: &Targets, route: Route) -> String {
    let deletable_ok = !matches!(route, Route::DeleteTask | Route::DeleteScheduled);
    match rng.below(100) {
        0..35 if deletable_ok && !t.done_tasks.is_empty() => rng.pick(&t.done_tasks),
        0..55 => t.waiting.clone(),
        55..80 => hex_id(rng, 32),
        _ => weird_id(rng),
    }
}

/// Fills a route's path with real, foreign and malformed ids, then sometimes bends it.
pub fn path(rng: &mut Rng, t: &Targets, route: Route) -> String {
    let real_instance = !matches!(route, Route::DeleteInstance);
    let (instance, task) = if route == Route::UpdateScheduled && rng.percent(60) {
        // Mostly the one task a reschedule could move, so that a valid value hidden behind a
        // duplicated key would show.
        (t.running.clone(), t.waiting.clone())
    } else {
        (instance(rng, t, real_instance), task(rng, t, route))
    };
    let mut p = route.template().replace("{p}", &project(rng, t)).replace("{i}", &instance).replace("{t}", &task);
    if rng.percent(30) {
        bend_path(rng, &mut p);
    }
    p
}

fn one(rng: &mut Rng, items: &[&'static str]) -> &'static str {
    items[rng.index(items.len())]
}

fn char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

/// One of the path tricks: percent-encoding, NUL, dot segments, doubled or trailing slashes,
/// overlong segments, unicode, bad escapes.
fn bend_path(rng: &mut Rng, p: &mut String) {
    let at = char_boundary(p, rng.index(p.len() + 1));
    match rng.below(16) {
        0 => {
            // Percent-encode one ASCII letter or digit: the same path, spelled differently.
            if let Some((i, c)) = p.char_indices().filter(|(_, c)| c.is_ascii_alphanumeric()).nth(rng.index(8)) {
                p.replace_range(i..i + 1, &format!("%{:02X}", c as u32));
            }
        }
        1 => p.insert_str(at, "%00"),
        2 => p.insert_str(at, "/.."),
        3 => p.insert_str(at, "/."),
        4 => p.push('/'),
        5 => p.insert(0, '/'),
        6 => p.insert_str(at, "//"),
        7 => p.push_str(&format!("/{}", "x".repeat(rng.range(1_000, 60_000) as usize))),
        8 => p.insert_str(at, one(rng, &["é", "\u{1F600}", "\u{0000}", "\u{FFFD}", "日本", "\u{202E}"])),
        9 => p.insert_str(at, one(rng, &["%", "%G0", "%0", "%%", "%C3", "%ED%A0%80", "%FF"])),
        10 => *p = p.to_uppercase(),
        11 => p.push_str(one(rng, &[";a=b", "#frag", "?", "??", "&", "%3F", "%23"])),
        12 => p.insert_str(at, one(rng, &[" ", "\t", "\\", "\"", "<", ">", "`", "{", "}", "|", "^"])),
        13 => p.insert_str(at, "/%2e%2e/"),
        14 => *p = p.replace('/', one(rng, &["%2F", "\\", "//"])),
        _ => p.push_str(&"/a".repeat(rng.range(50, 2_000) as usize)),
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1.5",
    "1e3",
    "0x10",
    "+5",
    " 5",
    "5 ",
    "99999999999999999999999999",
    "-9223372036854775809",
    "18446744073709551616",
    "NaN",
    "Infinity",
    "1_000",
    "١٢",
    "",
];

fn junk_value(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => rng.pick(NUMBERS).to_string(),
        1 => "9".repeat(rng.range(20, 5_000) as usize),
        2 => "%00".into(),
        3 => rng.pick(&["%", "%zz", "%C3", "%FF%FE", "%E2%82"]).to_string(),
        4 => rng.pick(&["%C3%A9t%C3%A9", "%F0%9F%98%80", "%E2%80%AE"]).to_string(),
        5 => "x".repeat(rng.range(1_000, 30_000) as usize),
        6 => rng.pick(&["=", "==", "a=b", "&", "+", "%26", "%3D", ";"]).to_string(),
        7 => rng
            .pick(&["20240230000000", "2024010100000", "202401010000000", "99999999999999", "00000000000000"])
            .to_string(),
        8 => {
            rng.pick(&["true", "null", "[]", "{}", "cancelled", "CANCELED", "CANCELLED%20", "CANCELLED%00"]).to_string()
        }
        9 => rng.pick(&["é", "日本", "\u{1F600}"]).to_string(),
        10 => "20200101000000".into(),
        _ => rng.range(0, 200).to_string(),
    }
}

const LIST_KEYS: &[&str] = &["start", "offset", "limit", "begin_time", "end_time"];
const SCHEDULE_KEYS: &[&str] = &["execute_at", "status"];

/// A query string (with its `?`), or nothing.
pub fn query(rng: &mut Rng, route: Route) -> String {
    if rng.percent(35) {
        return String::new();
    }
    let keys: &[&str] = match route {
        Route::UpdateScheduled => SCHEDULE_KEYS,
        _ => LIST_KEYS,
    };
    let mut pairs: Vec<String> = vec![];
    let many = rng.percent(3);
    let n = if many { rng.range(100, 1_500) } else { rng.range(1, 5) };
    for _ in 0..n {
        if many {
            pairs.push(format!("{}={}", rng.pick(keys), rng.below(1_000)));
            continue;
        }
        let key = match rng.below(10) {
            0 => junk_value(rng),
            1 => String::new(),
            _ => rng.pick(keys).to_string(),
        };
        match rng.below(12) {
            0 => pairs.push(key),
            1 => pairs.push(format!("{key}=")),
            _ => pairs.push(format!("{key}={}", junk_value(rng))),
        }
    }
    let duplicated = rng.percent(if route == Route::UpdateScheduled { 30 } else { 12 });
    if duplicated {
        // A duplicated key; on a reschedule, one of the two values may be valid.
        let key = rng.pick(keys).to_string();
        let valid = match key.as_str() {
            "execute_at" => crate::serve::compact_time(crate::serve::now_ms() + 2 * 86_400_000),
            "status" => "CANCELLED".into(),
            "limit" => "3".into(),
            _ => "1".into(),
        };
        let (a, b) = if rng.percent(50) { (valid, junk_value(rng)) } else { (junk_value(rng), valid) };
        if route == Route::UpdateScheduled && rng.percent(50) {
            pairs.clear();
        }
        let at = rng.index(pairs.len() + 1);
        pairs.insert(at, format!("{key}={a}"));
        pairs.push(format!("{key}={b}"));
    }
    // An odd separator would turn the duplicated key into another key (`&amp;status`), making a
    // request that is valid after all; odd separators go only into queries without one.
    let sep = if !duplicated && rng.percent(5) { rng.pick(&["&&", ";", "&amp;"]).to_string() } else { "&".into() };
    format!("?{}", pairs.join(&sep))
}

/// A value of the wrong type, or a right type with an impossible value.
fn wrong(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!("1"),
        3 => json!([]),
        4 => json!({}),
        5 => json!(-1),
        6 => json!(1.5),
        7 => json!(u64::MAX),
        8 => json!(i64::MIN),
        9 => json!("x".repeat(rng.range(100, 5_000) as usize)),
        10 => json!("\u{0000}"),
        _ => json!([[[[{"a": [1, {"b": null}]}]]]]),
    }
}

fn noise_fields(rng: &mut Rng, v: &mut Value) {
    let Some(m) = v.as_object_mut() else { return };
    for n in 0..rng.below(4) {
        m.insert(format!("x_noise_{n}"), wrong(rng));
    }
    if rng.percent(20) {
        m.insert("password".into(), json!("hunter2"));
        m.insert("kafka_manager_password".into(), json!("S3cret!"));
    }
}

/// The route's body with at least one of its rules broken.
fn broken_template(rng: &mut Rng, route: Route, t: &Targets) -> Value {
    use Route::*;
    let mut v = match route {
        Create | CreatePostPaid => {
            let mut b = json!({"name": "hostile-1", "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "p1"});
            let (k, bad): (&str, Value) = match rng.below(7) {
                0 => (
                    "name",
                    rng.pick(&[
                        json!("1abc"),
                        json!("ab"),
                        json!("a".repeat(65)),
                        json!("naïve"),
                        json!(5),
                        Value::Null,
                        json!("a b c d"),
                    ]),
                ),
                1 => ("engine_version", rng.pick(&[json!("9.9"), json!(2.7), json!(""), json!("2.7 ")])),
                2 => (
                    "broker_num",
                    rng.pick(&[json!(0), json!(51), json!(-1), json!("3"), json!(3.5), json!(4_294_967_296u64)]),
                ),
                3 => (
                    "storage_space",
                    rng.pick(&[
                        json!(99),
                        json!(-300),
                        json!("300"),
                        json!(300.5),
                        json!(4_294_967_296u64),
                        json!(u64::MAX),
                    ]),
                ),
                4 => ("product_id", rng.pick(&[json!(""), json!("p".repeat(65)), json!(5), json!(["p"])])),
                5 => ("enable_auto_topic", rng.pick(&[json!("true"), json!(1), json!([])])),
                _ => ("engine", json!("rabbitmq")),
            };
            b[k] = bad;
            b
        }
        ModifyConfigs => {
            let bad = match rng.below(8) {
                0 => Value::Null,
                1 => json!([]),
                2 => json!("log.retention.hours=24"),
                3 => json!([{"name": "no.such.config", "value": "1"}]),
                4 => {
                    json!([{"name": "log.retention.hours", "value": rng.pick(&["0", "169", "-1", "abc", "", "1e2", "24.0", "9999999999999999999999"])}])
                }
                5 => {
                    json!([{"name": "log.retention.hours", "value": "24"}, {"name": "log.retention.hours", "value": "48"}])
                }
                6 => json!(vec![json!({"name": "log.retention.hours", "value": "24"}); 51]),
                _ => json!([{"name": wrong(rng), "value": "24"}]),
            };
            json!({ "kafka_configs": bad })
        }
        AutoTopic => {
            let bad = rng.pick(&[json!("true"), json!(1), json!(0), Value::Null, json!([]), json!({"value": true})]);
            json!({ "enable_auto_topic": bad })
        }
        Extend | ExtendAlt => match rng.below(7) {
            0 => {
                json!({"oper_type": rng.pick(&[json!("STORAGE"), json!(""), json!(5), Value::Null, json!("sideways")]), "new_storage_space": 600})
            }
            1 => {
                json!({"oper_type": "storage", "new_storage_space": rng.pick(&[json!(300), json!(100), json!(0), json!(-600), json!("600"), json!(600.5), json!(4_294_967_296u64)])})
            }
            2 => {
                json!({"oper_type": "horizontal", "new_broker_num": rng.pick(&[json!(3), json!(2), json!(51), json!("4"), json!(u64::MAX), Value::Null])})
            }
            3 => {
                json!({"oper_type": "horizontal", "new_broker_num": 4, "new_storage_space": rng.pick(&[json!(100), json!(-1), json!(4_294_967_296u64), json!("x")])})
            }
            4 => {
                json!({"oper_type": "vertical", "new_product_id": rng.pick(&[json!(""), json!(t.product.clone()), json!("p".repeat(65)), json!(5), Value::Null])})
            }
            5 => json!({"oper_type": "storage"}),
            _ => json!({"new_storage_space": 600}),
        },
        Reassign | ReassignAlt => {
            let mut b = match rng.below(9) {
                0 => json!({}),
                1 => json!({"reassignments": []}),
                2 => json!({"reassignments": "t:0,1"}),
                3 => json!({"reassignments": [{"topic": "", "brokers": [0]}]}),
                4 => {
                    json!({"reassignments": [{"topic": "t", "brokers": rng.pick(&[json!([]), json!([3]), json!([-1]), json!(["0"]), json!([0, 99999999999u64])])}]})
                }
                5 => json!({"reassignments": [{"topic": "t".repeat(250), "brokers": [0]}]}),
                6 => {
                    json!({"reassignments": [{"topic": "t", "brokers": [0], "replication_factor": rng.pick(&[json!(0), json!(2), json!("1")])}]})
                }
                7 => {
                    json!({"reassignments": [{"topic": "t", "brokers": [0]}], "throttle": rng.pick(&[json!(0), json!(-2), json!("1"), json!(1.5)])})
                }
                _ => json!({"reassignments": [{"topic": "t"}]}),
            };
            if rng.percent(20) {
                b["time_estimate"] = json!(true);
            }
            b
        }
        Upgrade => match rng.below(5) {
            0 => json!({"is_schedule": rng.pick(&[json!("true"), json!(1), json!({}), json!([true])])}),
            1 => json!({"is_schedule": true}),
            2 => {
                json!({"is_schedule": true, "execute_at": rng.pick(&[json!(0), json!(-1), json!("tomorrow"), json!(i64::MAX), json!(1.5e12)])})
            }
            3 => json!({"is_schedule": true, "execute_at": crate::serve::now_ms() - 60_000}),
            _ => json!({"is_schedule": true, "execute_at": crate::serve::now_ms() + 20 * 366 * 86_400_000}),
        },
        // UpdateInstance: every body breaks at least one of its rules (docs/decisions.md).
        UpdateInstance => match rng.below(9) {
            0 => json!({}),
            1 => {
                json!({"name": rng.pick(&[json!("ab"), json!("1abc"), json!("a".repeat(65)), json!(5), json!("a b c")])})
            }
            2 => json!({"description": "d".repeat(1_025)}),
            3 => json!({"maintain_begin": "02:00:00"}),
            4 => {
                json!({"maintain_begin": rng.pick(&[json!("03:00:00"), json!("2:00"), json!(2), json!("25:00:00")]), "maintain_end": "07:00:00"})
            }
            5 => json!({"retention_policy": rng.pick(&[json!("delete"), json!(""), json!(1), json!("TIME_BASE")])}),
            6 => json!({"security_group_id": rng.pick(&[json!(""), json!("s".repeat(65)), json!(7), json!([])])}),
            7 => json!({"name": null, "description": null}),
            _ => json!({"enterprise_project_id": rng.pick(&[json!(""), json!("e".repeat(65)), json!({})])}),
        },
        Action => match rng.below(5) {
            0 => {
                json!({"action": rng.pick(&[json!("reboot"), json!(""), json!(1), Value::Null, json!("RESTART")]), "instances": [t.running.clone()]})
            }
            1 => {
                json!({"action": "restart", "instances": rng.pick(&[json!([]), json!("x"), json!({}), Value::Null, json!(1)])})
            }
            2 => json!({"action": "delete", "instances": vec![t.running.clone(); 51]}),
            3 => json!({"instances": [t.running.clone()]}),
            _ => json!({"action": "delete"}),
        },
        Tokens => match rng.below(5) {
            0 => json!({"auth": {"identity": {"methods": ["hw_ak_sk"]}}}),
            1 => {
                // Any id but the caller's own project, in any case.
                let mut id = weird_id(rng);
                while id.eq_ignore_ascii_case(&t.project) {
                    id = weird_id(rng);
                }
                json!({"auth": {"scope": {"project": {"id": id}}}})
            }
            2 => json!({"auth": {"scope": {"project": {"id": hex_id(rng, 32)}}}}),
            3 => json!({"auth": {"scope": {"project": {"name": t.project.clone()}}}}),
            _ => json!({"auth": {"scope": {"project": {"id": wrong(rng)}}}}),
        },
        // Routes that take no body: anything.
        _ => wrong(rng),
    };
    noise_fields(rng, &mut v);
    v
}

/// Another broken body for the route (for swapping one body for another).
pub fn broken_body(rng: &mut Rng, route: Route, t: &Targets) -> Vec<u8> {
    broken_template(rng, route, t).to_string().into_bytes()
}

fn nested(depth: usize, open: &str, close: &str) -> Vec<u8> {
    let mut s = open.repeat(depth);
    s.push_str(&close.repeat(depth));
    s.into_bytes()
}

/// Bytes that are not the JSON object any route takes.
pub fn junk_body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(16) {
        0 => vec![],
        1 => b"{".to_vec(),
        2 => b"{\"a\":1,}".to_vec(),
        3 => b"{'a': 1}".to_vec(),
        4 => rng.pick(&[&b"[]"[..], b"null", b"true", b"42", b"\"x\"", b"1e400", b"-0"]).to_vec(),
        5 => nested(rng.range(129, 100_000) as usize, "[", "]"),
        6 => nested(rng.range(129, 20_000) as usize, "{\"a\":", "}"),
        7 => format!("{{\"n\": {}}}", "9".repeat(rng.range(20, 10_000) as usize)).into_bytes(),
        8 => b"{\"n\": 1e999999}".to_vec(),
        9 => b"{\"s\": \"\\ud800\"}".to_vec(),
        10 => {
            // A control character makes the string invalid JSON whatever random bytes follow.
            let mut b = b"{\"s\": \"\x01".to_vec();
            b.extend(rng.some_bytes(1, 200));
            b.extend(b"\"}");
            b
        }
        11 => b"\xEF\xBB\xBF{}".to_vec(),
        12 => b"{} {}".to_vec(),
        13 => format!("{{\"s\": \"{}\"}}", "x".repeat(rng.range(262_200, 300_000) as usize)).into_bytes(),
        14 => b"{\"a\": NaN, \"b\": Infinity}".to_vec(),
        _ => rng.some_bytes(1, 4_000),
    }
}

/// A body for the route: mostly its template broken, sometimes junk.
pub fn body(rng: &mut Rng, route: Route, t: &Targets) -> Vec<u8> {
    if !route.mutating()
        || route == Route::DeleteTask
        || route == Route::DeleteScheduled
        || route == Route::DeleteInstance
    {
        return if rng.percent(10) { junk_body(rng) } else { vec![] };
    }
    if route == Route::UpdateScheduled {
        return if rng.percent(20) { junk_body(rng) } else { vec![] };
    }
    if rng.percent(20) {
        let junk = junk_body(rng);
        // Junk that happens to be a JSON object (a big number, a long string) could be a valid
        // body (an upgrade takes `{}`): those get the broken template instead.
        if junk.len() > 256 * 1024 || !matches!(serde_json::from_slice::<Value>(&junk), Ok(Value::Object(_))) {
            return junk;
        }
    }
    let mut text = broken_template(rng, route, t).to_string().into_bytes();
    if rng.percent(10) && text.first() == Some(&b'{') {
        // Text-level noise serde_json's Value cannot carry.
        let raw: &[u8] = rng.pick(&[
            &b"\"huge\": 123456789012345678901234567890123456789,"[..],
            b"\"tiny\": 1.0e-400,",
            b"\"nul\": \"\\u0000\",",
        ]);
        text.splice(1..1, raw.iter().copied());
    }
    text
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD"];

/// A method the route does not take (or a made-up one).
pub fn other_method(rng: &mut Rng, route: Route) -> String {
    let m = match rng.below(10) {
        0 => "X".repeat(rng.range(100, 4_000) as usize),
        1 => rng.pick(&["get", "Post", "FOO", "M-SEARCH", "PROPFIND", "BREW", "A1!#$%&'*+-.^_`|~"]).to_string(),
        _ => rng.pick(METHODS).to_string(),
    };
    if m == route.method() || m == "DELETE" || m == "PUT" || m == "POST" { "PATCH".into() } else { m }
}

/// Headers nobody signs: forwarding, content negotiation, projects, cookies, many and big ones.
pub fn extra_headers(rng: &mut Rng, t: &Targets) -> Vec<(String, Vec<u8>)> {
    let mut h: Vec<(String, Vec<u8>)> = vec![];
    let n = if rng.percent(3) { rng.range(30, 90) } else { rng.range(0, 4) };
    for k in 0..n {
        let (name, value): (String, Vec<u8>) = match rng.below(12) {
            0 => (
                "x-forwarded-for".into(),
                rng.pick(&[&b"1.2.3.4"[..], b"::1, 10.0.0.1", b"garbage", b"999.999.999.999", b""]).to_vec(),
            ),
            1 => (
                "x-project-id".into(),
                if rng.percent(50) { t.project.clone().into_bytes() } else { hex_id(rng, 32).into_bytes() },
            ),
            2 => ("accept".into(), b"application/xml;q=0.9, */*;q=0".to_vec()),
            3 => ("user-agent".into(), vec![b'u'; rng.range(1, 8_000) as usize]),
            4 => ("x-request-id".into(), b"attacker-chosen-id\"><script>".to_vec()),
            5 => ("cookie".into(), b"session=../../; a=%00".to_vec()),
            6 => ("forwarded".into(), b"for=\"[::1]\";proto=gopher".to_vec()),
            7 => ("x-obs-text".into(), vec![0x80, 0xFF, b'a', 0xC3, 0xA9]),
            8 => ("accept-encoding".into(), b"gzip, br, zstd, x-unknown".to_vec()),
            9 => ("x-auth-token".into(), b"KT1.00.00".to_vec()),
            10 => ("upgrade".into(), b"websocket".to_vec()),
            _ => (
                format!("x-h-{k}-{}", rng.below(1000)),
                {
                    let n = rng.range(1, 64) as usize;
                    hex_id(rng, n)
                }
                .into_bytes(),
            ),
        };
        h.push((name, value));
    }
    h
}

/// A hostile request on any route (API or open), before authentication is added.
pub fn draft(rng: &mut Rng, t: &Targets) -> Draft {
    let route = if rng.percent(8) { rng.pick(OPEN_ROUTES) } else { rng.pick(API_ROUTES) };
    let mut method = route.method().to_owned();
    let mut label = "route";
    let mut target = path(rng, t, route);
    if rng.percent(8) {
        method = other_method(rng, route);
        label = "other method";
    }
    let query = query(rng, route);
    // A path bent to end in `?` or `??` would make the query's first key another (`??status`):
    // a reschedule whose valid value hides behind a duplicated key would then carry that value
    // once, a valid request after all. Such a path goes without the query.
    if !target.contains('?') {
        target.push_str(&query);
    }
    let body = body(rng, route, t);
    let headers = extra_headers(rng, t);
    Draft { route, method, target, body, headers, label }
}

/// A request that is well formed but for its body's content: a real route with real ids, the
/// route's method, no query. Used under forged credentials, where only the gateway may answer.
pub fn plain(rng: &mut Rng, t: &Targets) -> Draft {
    let route = rng.pick(API_ROUTES);
    let id = |rng: &mut Rng| if rng.percent(70) { t.running.clone() } else { t.failed.clone() };
    let instance = if route == Route::DeleteInstance { uuid(rng) } else { id(rng) };
    let task = match route {
        Route::DeleteTask | Route::DeleteScheduled | Route::UpdateScheduled => t.waiting.clone(),
        _ => rng.pick(&t.done_tasks),
    };
    let mut target = route.template().replace("{p}", &t.project).replace("{i}", &instance).replace("{t}", &task);
    if route == Route::UpdateScheduled {
        target.push_str("?status=PAUSED");
    } else if rng.percent(30) && !route.mutating() {
        target.push_str("?limit=5&start=1");
    }
    let body = if route.mutating() && route.method() != "DELETE" && route != Route::UpdateScheduled {
        broken_template(rng, route, t).to_string().into_bytes()
    } else {
        vec![]
    };
    Draft { route, method: route.method().to_owned(), target, body, headers: vec![], label: "plain" }
}
