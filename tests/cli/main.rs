//! The CLI client against a live server: the built binary, run as a person or a script would
//! (AK/SK in `HUAWEICLOUD_SDK_*`, stdout piped), every command, its JSON parsed back and
//! compared with what the API answers, its tables, exit codes and error lines.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that meets the unexpected should stop there: a panic is its failure"
)]

extern crate kafka_tasks_testkit as kit;
mod tls;

use kit::serve;

use std::process::Command;

use kafka_tasks::auth::IssuedCredential;
use serde_json::Value;
use serve::{Api, PROJECT, ServerProcess, bin};

const MASTER_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
/// Instances asking for more storage than this fail their createInstance task.
const POOL_GB: &str = "1000";

/// What one run of the CLI left.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

/// A server on a fresh database, an admin key made with `credentials create`, and a client
/// signed with the same key to check what the CLI did.
struct Fixture {
    dir: tempfile::TempDir,
    db: String,
    server: ServerProcess,
    cred: IssuedCredential,
    api: Api,
}

impl Fixture {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// With more `serve` flags.
    fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("sqlite:{}", dir.path().join("cli.db").display());
        let key_file = dir.path().join("master.key").display().to_string();
        let cred = serve::cli_credential(&db, MASTER_KEY, "cli-user", "admin");
        let args = [
            "--database",
            &db,
            "--master-key-file",
            &key_file,
            "--time-scale",
            "0.01",
            "--poll-ms",
            "20",
            "--storage-pool-gb",
            POOL_GB,
        ];
        let args: Vec<&str> = args.iter().chain(extra).copied().collect();
        let server =
            ServerProcess::start(&args, &[("KAFKA_TASKS_MASTER_KEY", MASTER_KEY)], &dir.path().join("server.log"));
        let api = Api::new(&server.base, cred.clone());
        Fixture { dir, db, server, cred, api }
    }

    /// The CLI with nothing from the caller's environment but what a user of the SDKs sets.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args);
        self.with_env(c)
    }

    /// `c` with the environment [`Self::command`] gives the CLI.
    fn with_env(&self, mut c: Command) -> Command {
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("KAFKA_TASKS_ENDPOINT", &self.server.base)
            .env("HUAWEICLOUD_SDK_AK", &self.cred.access_key)
            .env("HUAWEICLOUD_SDK_SK", &self.cred.secret_key)
            .env("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT);
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        run(self.command(args))
    }

    /// `args` with `--output json`, which must succeed; its stdout as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        self.run(&all).ok().json()
    }

    /// The API's answer to a GET, as JSON.
    async fn get(&self, path: &str) -> Value {
        let r = self.api.send("GET", path, None).await.expect("the API answers");
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        r.json()
    }

    async fn status_of(&self, path: &str) -> u16 {
        self.api.send("GET", path, None).await.expect("the API answers").status
    }

    /// A RUNNING instance made with `instances create --wait`.
    fn running_instance(&self, name: &str) -> String {
        let created = self.json(&["instances", "create", "--name", name, "--wait"]);
        created["instance_id"].as_str().expect("instance_id").to_owned()
    }
}

fn run(mut c: Command) -> Out {
    let out = c.output().expect("the CLI runs");
    let o = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"), "a panic: {o:?}");
    o
}

fn tasks_path(inst: &str) -> String {
    format!("/v2/{PROJECT}/instances/{inst}/tasks")
}

fn first_task_id(list: &Value, key: &str) -> String {
    list[key][0]["id"].as_str().expect("a task id").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_commands_print_the_apis_own_json_and_tables_for_people() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-tasks");
    let changed = f.json(&["configs", "set", "-i", &inst, "log.retention.hours=24", "--wait"]);
    let job = changed["job_id"].as_str().expect("job_id").to_owned();

    let listed = f.json(&["tasks", "list", "-i", &inst]);
    assert_eq!(listed, f.get(&tasks_path(&inst)).await);
    assert_eq!(listed["task_count"], "2");
    let one_page = f.json(&["tasks", "list", "-i", &inst, "--limit", "1", "--offset", "1"]);
    assert_eq!(one_page, f.get(&format!("{}?limit=1&offset=1", tasks_path(&inst))).await);
    assert_eq!(one_page["tasks"].as_array().map(Vec::len), Some(1));
    let since_later = f.json(&["tasks", "list", "-i", &inst, "--since", "+1h"]);
    assert_eq!(since_later["task_count"], "0", "{since_later}");

    let task_path = format!("{}/{job}", tasks_path(&inst));
    assert_eq!(f.json(&["tasks", "show", "-i", &inst, &job]), f.get(&task_path).await);
    assert_eq!(f.json(&["tasks", "progress", "-i", &inst, &job]), f.get(&format!("{task_path}/progress")).await);
    let waited = f.json(&["tasks", "wait", "-i", &inst, &job]);
    assert_eq!(waited["tasks"][0]["status"], "SUCCESS");

    // For people: the task, its name and status, a relative age; no colour when piped.
    let table = f.run(&["tasks", "list", "-i", &inst]).ok();
    for want in [job.as_str(), "kafkaConfigModify", "createInstance", "SUCCESS", "2 of 2 tasks"] {
        assert!(table.stdout.contains(want), "{want} missing from {}", table.stdout);
    }
    assert!(table.stdout.contains("just now") || table.stdout.contains(" s ago"), "no age in {}", table.stdout);
    assert!(!table.stdout.contains('\x1b'), "colour codes on a pipe: {:?}", table.stdout);
    let shown = f.run(&["tasks", "show", "-i", &inst, &job]).ok();
    assert!(shown.stdout.contains("log.retention.hours") && shown.stdout.contains("cli-user"), "{}", shown.stdout);
    let steps = f.run(&["tasks", "progress", "-i", &inst, &job]).ok();
    assert!(steps.stdout.contains("COMPLETED") && steps.stdout.contains("100% done"), "{}", steps.stdout);

    let deleted = f.run(&["tasks", "delete", "-i", &inst, &job]).ok();
    assert!(deleted.stdout.contains(&job));
    assert_eq!(f.status_of(&task_path).await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_are_shown_to_people_from_the_answer_read_into_its_type() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-shown");
    // An answer the client cannot read into its wire type is printed as JSON: none here.
    let shown = f.run(&["instances", "show", &inst]).ok();
    for want in [inst.as_str(), "cli-shown", "RUNNING", "02:00:00", "06:00:00", "created_at", "just now"] {
        assert!(shown.stdout.contains(want), "{want} missing from {}", shown.stdout);
    }
    assert!(!shown.stdout.contains('{'), "shown as JSON, not read into its type: {}", shown.stdout);
    let listed = f.run(&["instances", "list"]).ok();
    for want in [inst.as_str(), "cli-shown", "RUNNING", "STORAGE GB", "1 instance"] {
        assert!(listed.stdout.contains(want), "{want} missing from {}", listed.stdout);
    }
    assert!(!listed.stdout.contains('{'), "shown as JSON, not read into its type: {}", listed.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_commands_and_the_bulk_delete_print_what_the_api_answers() {
    let f = Fixture::start();
    let path = format!("/v2/{PROJECT}/tasks/retention");
    let shown = f.json(&["retention", "show"]);
    assert_eq!(shown, f.get(&path).await);
    assert_eq!(shown["source"], "default");
    let set = f.json(&[
        "retention",
        "set",
        "--max-age-days",
        "30",
        "--override",
        "createInstance=365",
        "--override",
        "restartInstance=forever",
        "--max-tasks-per-instance",
        "100",
    ]);
    assert_eq!(set, f.get(&path).await);
    assert_eq!(
        set["policy"],
        serde_json::json!({"max_age_days": 30, "overrides": {"createInstance": 365, "restartInstance": null},
                           "max_tasks_per_instance": 100})
    );
    let table = f.run(&["retention", "show"]).ok();
    for want in ["project", "30 days", "createInstance: 365 days", "restartInstance: forever", "100"] {
        assert!(table.stdout.contains(want), "{want} missing from {}", table.stdout);
    }
    let refused = f.run(&["retention", "set", "--max-age-days", "0"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("DMS.00400062"), "{}", refused.stderr);
    assert_eq!(f.json(&["retention", "reset"])["source"], "default");

    // Bulk delete: everything finished before a time, or only a status.
    let inst = f.running_instance("cli-bulk");
    f.json(&["autotopic", "-i", &inst, "on", "--wait"]);
    let none = f.json(&["tasks", "delete", "-i", &inst, "--before", "+1h", "--status", "FAILED"]);
    assert_eq!(none, serde_json::json!({"deleted": 0, "more": false}));
    let out = f.run(&["tasks", "delete", "-i", &inst, "--before", "+1h"]).ok();
    assert!(out.stdout.contains("deleted 2 finished task(s)"), "{}", out.stdout);
    assert_eq!(f.get(&tasks_path(&inst)).await["task_count"], "0");
    let both = f.run(&["tasks", "delete", "-i", &inst, "some-task", "--before", "+1h"]);
    assert_eq!(both.code, 2, "a task and --before together: {both:?}");
}

/// The CLI on a terminal (a pty made by util-linux `script`), `answer` typed on it; the
/// screen's text comes back as stdout.
fn on_terminal(f: &Fixture, args: &[&str], answer: &str) -> Out {
    let line: Vec<String> = std::iter::once(bin()).chain(args.iter().copied()).map(|a| format!("'{a}'")).collect();
    let mut c = Command::new("script");
    c.args(["-qec", &line.join(" "), "/dev/null"]);
    let mut c = f.with_env(c);
    use std::io::Write;
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script runs");
    // Typed once the prompt is up; the pty keeps it until the CLI reads.
    child.stdin.take().expect("stdin").write_all(answer.as_bytes()).expect("typed");
    let out = child.wait_with_output().expect("script ends");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_delete_reads_ages_as_past_shows_a_dry_run_and_asks_before_deleting_many() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-safe-delete");
    let count = || async { f.get(&tasks_path(&inst)).await["task_count"].as_str().unwrap_or_default().to_owned() };
    // Ages are in the past, signed or not: nothing here is 30 days old.
    for age in ["-30d", "30d", "1h"] {
        let out = f.run(&["tasks", "delete", "-i", &inst, "--before", age]).ok();
        assert!(out.stdout.contains("deleted 0 finished task(s)"), "{age}: {out:?}");
    }
    assert_eq!(count().await, "1");
    for on in ["on", "off", "on", "off", "on", "off", "on", "off", "on", "off", "on"] {
        f.json(&["autotopic", "-i", &inst, on, "--wait"]);
    }
    assert_eq!(count().await, "12");

    // The dry run: the server's own count of the same query, and nothing removed.
    let preview = f.json(&["tasks", "delete", "-i", &inst, "--before", "now", "--dry-run"]);
    assert_eq!(
        (preview["matched"].clone(), preview["dry_run"].clone()),
        (serde_json::json!(12), serde_json::json!(true))
    );
    let table = f.run(&["tasks", "delete", "-i", &inst, "--before", "now", "--dry-run"]).ok();
    assert!(table.stdout.contains("12 finished task(s) created before"), "{}", table.stdout);
    assert!(
        table.stdout.contains("would be deleted") && table.stdout.contains("kafkaConfigModify"),
        "{}",
        table.stdout
    );
    assert_eq!(count().await, "12");

    // No terminal and more than 10: refused without --yes, naming the count.
    let refused = f.run(&["tasks", "delete", "-i", &inst, "--before", "now"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("12 finished tasks match") && refused.stderr.contains("--yes"),
        "{}",
        refused.stderr
    );
    assert_eq!(count().await, "12");

    // On a terminal it asks, naming the count; anything but yes deletes nothing.
    let declined = on_terminal(&f, &["tasks", "delete", "-i", &inst, "--before", "now"], "n\n");
    assert!(declined.stdout.contains("Delete 12 finished task(s) of instance"), "{declined:?}");
    assert!(declined.stdout.contains("nothing was deleted"), "{declined:?}");
    assert_eq!(count().await, "12");

    let by_name = ["tasks", "delete", "-i", &inst, "--before", "now", "--name", "kafkaConfigModify", "--yes"];
    assert!(f.run(&by_name).ok().stdout.contains("deleted 11 finished task(s)"));
    let confirmed = on_terminal(&f, &["tasks", "delete", "-i", &inst, "--before", "now"], "y\n");
    assert!(confirmed.stdout.contains("Delete 1 finished task(s)"), "{confirmed:?}");
    assert!(confirmed.stdout.contains("deleted 1 finished task(s)"), "{confirmed:?}");
    assert_eq!(count().await, "0");

    let unsigned_at = f.run(&["reassign", "-i", &inst, "--topic", "t", "--brokers", "0", "--at", "2h"]);
    assert_eq!(unsigned_at.code, 2, "{unsigned_at:?}");
    assert!(unsigned_at.stderr.contains("+2h"), "{}", unsigned_at.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_commands_list_reschedule_cancel_and_delete() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-scheduled");
    let scheduled = f.json(&["reassign", "-i", &inst, "--topic", "orders", "--brokers", "0,1", "--at", "+2h"]);
    let id = scheduled["schedule_id"].as_str().expect("schedule_id").to_owned();
    let path = format!("/v2/{PROJECT}/instances/{inst}/scheduled-tasks");

    let listed = f.json(&["scheduled", "list", "-i", &inst]);
    assert_eq!(listed, f.get(&path).await);
    assert_eq!(first_task_id(&listed, "jobs"), id);
    let before = listed["jobs"][0]["schedule_at"].clone();
    let table = f.run(&["scheduled", "list", "-i", &inst]).ok();
    assert!(table.stdout.contains(&id) && table.stdout.contains("in 2 h"), "{}", table.stdout);

    f.run(&["scheduled", "reschedule", "-i", &inst, &id, "--at", "+3h"]).ok();
    let moved = f.get(&path).await;
    assert_ne!(moved["jobs"][0]["schedule_at"], before, "not moved: {moved}");

    f.run(&["scheduled", "cancel", "-i", &inst, &id]).ok();
    assert_eq!(f.get(&path).await["jobs"][0]["status"], "CANCELLED");
    f.run(&["scheduled", "resume", "-i", &inst, &id]).ok();
    assert_eq!(f.get(&path).await["jobs"][0]["status"], "CREATED");
    f.run(&["scheduled", "cancel", "-i", &inst, &id]).ok();

    f.run(&["scheduled", "delete", "-i", &inst, &id]).ok();
    assert_eq!(f.get(&path).await["job_count"], 0);

    let late = f.run(&["scheduled", "reschedule", "-i", &inst, &id, "--at", "next week"]);
    assert_eq!(late.code, 2, "a bad time is a usage error: {late:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_commands_list_show_update_and_delete_with_wait() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-instances");
    let path = format!("/v2/{PROJECT}/instances/{inst}");

    assert_eq!(f.json(&["instances", "list"]), f.get(&format!("/v2/{PROJECT}/instances")).await);
    assert_eq!(f.json(&["instances", "show", &inst]), f.get(&path).await);
    let table = f.run(&["instances", "list"]).ok();
    assert!(table.stdout.contains("cli-instances") && table.stdout.contains("RUNNING"), "{}", table.stdout);

    f.run(&[
        "instances",
        "update",
        &inst,
        "--description",
        "from the CLI",
        "--maintain-begin",
        "22:00:00",
        "--maintain-end",
        "02:00:00",
    ])
    .ok();
    let shown = f.get(&path).await;
    assert_eq!(
        (shown["description"].as_str(), shown["maintain_begin"].as_str()),
        (Some("from the CLI"), Some("22:00:00"))
    );
    let nothing = f.run(&["instances", "update", &inst]);
    assert_eq!(nothing.code, 2, "{nothing:?}");

    let deleted = f.run(&["instances", "delete", &inst, "--wait"]).ok();
    assert!(deleted.stdout.contains("deleted"), "{deleted:?}");
    assert!(deleted.stderr.lines().count() >= 2, "line-per-change expected: {}", deleted.stderr);
    assert_eq!(f.status_of(&path).await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_starts_its_task_and_wait_follows_it_line_by_line() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-operations");
    let path = format!("/v2/{PROJECT}/instances/{inst}");

    assert_eq!(f.json(&["configs", "get", "-i", &inst]), f.get(&format!("{path}/configs")).await);
    let configs = f.run(&["configs", "get", "-i", &inst]).ok();
    assert!(configs.stdout.contains("log.retention.hours"), "{}", configs.stdout);

    // Not a terminal: one plain line per change on stderr, the outcome on stdout.
    let set = f.run(&["configs", "set", "-i", &inst, "log.retention.hours=48", "--wait"]).ok();
    assert!(set.stdout.contains("SUCCESS"), "{set:?}");
    let lines: Vec<&str> = set.stderr.lines().collect();
    assert!(lines.len() >= 2 && lines.iter().all(|l| l.contains('%')), "{}", set.stderr);
    assert!(lines.last().is_some_and(|l| l.contains("SUCCESS") && l.contains("100%")), "{}", set.stderr);
    assert!(!set.stderr.contains('\x1b') && !set.stderr.contains('\r'), "a bar on a pipe: {:?}", set.stderr);

    f.run(&["autotopic", "-i", &inst, "on", "--wait"]).ok();
    f.run(&["resize", "-i", &inst, "--storage", "600", "--wait"]).ok();
    f.run(&["resize", "-i", &inst, "--brokers", "4", "--wait"]).ok();
    f.run(&["resize", "-i", &inst, "--product", "c6.4u8g.cluster", "--wait"]).ok();
    let estimate = f.json(&["reassign", "-i", &inst, "--topic", "t", "--brokers", "0,1,2", "--estimate"]);
    assert!(estimate["reassignment_time"].as_u64().is_some(), "{estimate}");
    f.run(&["reassign", "-i", &inst, "--topic", "t", "--brokers", "0,1,2", "--replication-factor", "2", "--wait"]).ok();
    f.run(&["restart", "-i", &inst, "--wait"]).ok();
    let shown = f.get(&path).await;
    assert_eq!(shown["enable_auto_topic"], true);
    assert_eq!((shown["storage_space"].as_u64(), shown["broker_num"].as_u64()), (Some(800), Some(4)), "{shown}");
    assert_eq!(shown["product_id"], "c6.4u8g.cluster");

    let upgrade_path = format!("/v2/{PROJECT}/kafka/instances/{inst}/upgrade");
    assert_eq!(f.json(&["upgrade", "-i", &inst, "--check"]), f.get(&upgrade_path).await);
    let added = Command::new(bin())
        .args(["kernels", "add", "--engine-version", "2.7", "--build", "2.7.1-h0.cbu.dms.999.r0", "--database", &f.db])
        .output()
        .expect("kernels add runs");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    f.run(&["upgrade", "-i", &inst, "--wait"]).ok();
    assert_eq!(f.get(&upgrade_path).await["current_version"], "2.7.1-h0.cbu.dms.999.r0");

    let names: Vec<String> = f.json(&["tasks", "list", "-i", &inst, "--limit", "100"])["tasks"]
        .as_array()
        .map(|a| a.iter().filter(|t| t["status"] == "SUCCESS").map(|t| t["name"].to_string()).collect())
        .unwrap_or_default();
    for want in ["kafkaConfigModify", "extendInstance", "kafkaPartitionReassign", "restartInstance", "upgradeInstance"]
    {
        assert!(names.iter().any(|n| n.contains(want)), "no successful {want} in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_exits_3_with_its_step() {
    let f = Fixture::start();
    let too_big = f.run(&["instances", "create", "--name", "cli-too-big", "--storage-space", "2000", "--wait"]);
    assert_eq!(too_big.code, 3, "{too_big:?}");
    // Which step, what was wrong, what to do.
    for want in
        ["FAILED at step create_resources", "not enough storage", "2000 GB", "What to do: create the instance again"]
    {
        assert!(too_big.stderr.contains(want), "{want} missing from {}", too_big.stderr);
    }

    let inst = f.json(&["instances", "list"])["instances"][0]["instance_id"].as_str().expect("an instance").to_owned();
    let task = first_task_id(&f.json(&["tasks", "list", "-i", &inst]), "tasks");
    let waited = f.run(&["tasks", "wait", "-i", &inst, &task]);
    assert_eq!(waited.code, 3, "{waited:?}");
    assert!(waited.stderr.contains(&format!("task {task} FAILED at step")), "{}", waited.stderr);
    assert!(waited.stderr.contains("not enough storage"), "{}", waited.stderr);
    let shown = f.run(&["tasks", "show", "-i", &inst, &task]).ok();
    for want in ["failed at", "step create_resources", "reason", "not enough storage", "what to do"] {
        assert!(shown.stdout.contains(want), "{want} missing from {}", shown.stdout);
    }
    // The JSON is the DMS record as it came, with nothing added.
    let record = f.json(&["tasks", "show", "-i", &inst, &task]);
    assert!(record["tasks"][0].get("failure").is_none() && record["tasks"][0].get("reason").is_none(), "{record}");
    assert_eq!(f.get(&format!("{}/{task}", tasks_path(&inst))).await["tasks"][0]["status"], "FAILED");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_show_the_dms_code_message_and_request_id_and_exit_codes_tell_them_apart() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-errors");

    let missing = f.run(&["tasks", "show", "-i", &inst, "0123456789abcdef0123456789abcdef"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    let line = missing.stderr.trim();
    assert!(line.starts_with("error: DMS.00404070: ") && line.contains("(HTTP 404, request id "), "{line}");
    let id = line.rsplit("request id ").next().unwrap_or_default().trim_end_matches(')');
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "request id {id:?} in {line}");
    assert!(f.server.log.exists());
    let log = std::fs::read_to_string(&f.server.log).unwrap_or_default();
    assert!(log.contains(id), "the request id is the server's own");

    let wrong_secret = run({
        let mut c = f.command(&["instances", "list"]);
        c.env("HUAWEICLOUD_SDK_SK", "not-the-secret");
        c
    });
    assert_eq!(wrong_secret.code, 1);
    assert!(wrong_secret.stderr.contains("APIGW.0301"), "{}", wrong_secret.stderr);

    let down = run({
        let mut c = f.command(&["instances", "list"]);
        c.env("KAFKA_TASKS_ENDPOINT", "http://127.0.0.1:1");
        c
    });
    assert_eq!(down.code, 4, "{down:?}");
    assert!(down.stderr.contains("no answer from http://127.0.0.1:1"), "{}", down.stderr);

    // HTTPS is spoken (tests/cli/tls.rs): nothing listening is "no answer", like plain HTTP.
    let https = f.run(&["instances", "list", "--endpoint", "https://127.0.0.1:1"]);
    assert_eq!(https.code, 4, "{https:?}");
    assert!(https.stderr.contains("no answer from https://127.0.0.1:1"), "{}", https.stderr);
    let bad_ca = f.run(&["instances", "list", "--ca-file", "/nonexistent/ca.pem"]);
    assert_eq!(bad_ca.code, 2, "{bad_ca:?}");
    assert!(bad_ca.stderr.contains("cannot read the CA file"), "{}", bad_ca.stderr);

    let no_creds = run({
        let mut c = f.command(&["instances", "list"]);
        c.env_remove("HUAWEICLOUD_SDK_AK").env_remove("HUAWEICLOUD_SDK_SK");
        c
    });
    assert_eq!(no_creds.code, 2);
    assert!(no_creds.stderr.contains("HUAWEICLOUD_SDK_AK"), "{}", no_creds.stderr);

    let usage = f.run(&["tasks", "show"]);
    assert_eq!(usage.code, 2, "{usage:?}");
    let busy = f.run(&["upgrade", "-i", &inst]);
    assert_eq!(busy.code, 1);
    assert!(busy.stderr.contains("DMS.00400026"), "{}", busy.stderr);

    // The batch restart answers 200 with a per-instance "failed": still a refusal, exit 1.
    let creating = f.json(&["instances", "create", "--name", "cli-creating"]);
    let creating = creating["instance_id"].as_str().expect("instance_id");
    let refused = f.run(&["restart", "-i", creating, "--wait"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("could not be restarted") && refused.stdout.is_empty(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_come_from_a_private_profile_file_or_a_token_never_a_readable_file() {
    let f = Fixture::start();
    let dir = f.dir.path().join("config").join("kafka-tasks");
    std::fs::create_dir_all(&dir).expect("config dir");
    let file = dir.join("profiles.toml");
    let text = format!(
        "[lab]\nendpoint = \"{}\"\nproject_id = \"{PROJECT}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\n",
        f.server.base, f.cred.access_key, f.cred.secret_key
    );
    std::fs::write(&file, text).expect("profile file");
    let chmod = |mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let with_profile = |f: &Fixture| {
        let mut c = f.command(&["instances", "list", "--profile", "lab", "--output", "json"]);
        for v in ["HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_PROJECT_ID", "KAFKA_TASKS_ENDPOINT"] {
            c.env_remove(v);
        }
        run(c)
    };

    chmod(0o644);
    let refused = with_profile(&f);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("chmod 600") && refused.stderr.contains("0644"), "{}", refused.stderr);

    chmod(0o600);
    let used = with_profile(&f);
    assert_eq!(used.code, 0, "{used:?}");
    assert_eq!(used.json()["instance_num"], 0);

    let token = Command::new(bin())
        .args(["token", "create", "--access-key", &f.cred.access_key, "--database", &f.db])
        .env("KAFKA_TASKS_MASTER_KEY", MASTER_KEY)
        .output()
        .expect("token create runs");
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let with_token = run({
        let mut c = f.command(&["instances", "list", "-o", "json"]);
        c.env_remove("HUAWEICLOUD_SDK_AK").env_remove("HUAWEICLOUD_SDK_SK");
        c.env("KAFKA_TASKS_TOKEN", String::from_utf8_lossy(&token.stdout).trim());
        c
    });
    assert_eq!(with_token.code, 0, "{with_token:?}");
    assert_eq!(with_token.json()["instance_num"], 0);
}

/// The CLI with only the endpoint and a config folder: no credentials in the environment.
fn bare(f: &Fixture, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", f.dir.path())
        .env("XDG_CONFIG_HOME", f.dir.path().join("config"));
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn configure_writes_a_private_profile_and_token_create_asks_the_server() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::start();
    let profiles = f.dir.path().join("config/kafka-tasks/profiles.toml");
    let initial = f.dir.path().join("initial-credential.json");
    std::fs::write(&initial, serde_json::to_string(&f.cred).expect("json")).expect("written");

    // From the server's credential file: a 0600 profile that the next command uses as it is.
    let out = run(bare(&f, &["configure", "--from", &initial.display().to_string(), "--endpoint", &f.server.base]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("profile [default] written") && out.stdout.contains("accepts this key"), "{out:?}");
    let mode = std::fs::metadata(&profiles).expect("the profiles file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let listed = run(bare(&f, &["instances", "list", "-o", "json"]));
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.json()["instances"].is_array());

    // From answers, one a line (a script, or a person at the prompts); Enter keeps a value.
    let mut c = bare(&f, &["configure", "--profile", "lab"]);
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let answers = format!("{}\n{PROJECT}\n{}\n{}\n", f.server.base, f.cred.access_key, f.cred.secret_key);
    child.stdin.take().expect("stdin").write_all(answers.as_bytes()).expect("answered");
    let out = child.wait_with_output().expect("ends");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for prompt in ["Endpoint", "Project ID", "Access key ID (AK)", "Secret access key (SK)"] {
        assert!(stderr.contains(prompt), "{prompt} not asked: {stderr}");
    }
    assert!(!stderr.contains(&f.cred.secret_key), "the secret was echoed: {stderr}");
    let text = std::fs::read_to_string(&profiles).expect("profiles");
    assert!(text.contains("[lab]") && text.contains("[default]"), "{text}");
    let mut c = bare(&f, &["configure", "--profile", "lab"]);
    c.stdin(std::process::Stdio::null());
    let again = run(c);
    assert_eq!(again.code, 2, "no answers: nothing written, {again:?}");
    assert_eq!(std::fs::read_to_string(&profiles).expect("profiles"), text);

    // A token from the server with the profile's AK/SK, usable at once.
    let token = run(bare(&f, &["token", "create", "--profile", "lab"]));
    assert_eq!(token.code, 0, "{token:?}");
    let token = token.stdout.trim().to_owned();
    let mut c = bare(&f, &["instances", "list", "-o", "json"]);
    c.env("KAFKA_TASKS_TOKEN", &token)
        .env("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
        .env("KAFKA_TASKS_ENDPOINT", &f.server.base);
    assert_eq!(run(c).code, 0);

    // The database path never creates what is missing, and says where it looked.
    let empty = tempfile::tempdir().expect("dir");
    let mut c = bare(&f, &["token", "create", "--access-key", &f.cred.access_key]);
    c.current_dir(empty.path());
    let out = run(c);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no database at data/kafka-tasks.db") && out.stderr.contains("looked in"), "{out:?}");
    assert_eq!(std::fs::read_dir(empty.path()).expect("dir").count(), 0, "something was created");
    let mut c = bare(&f, &["token", "create", "--access-key", &f.cred.access_key, "--database", &f.db]);
    c.current_dir(empty.path());
    let out = run(c);
    assert!(out.code == 1 && out.stderr.contains("no master key file at data/master.key"), "{out:?}");
    assert_eq!(std::fs::read_dir(empty.path()).expect("dir").count(), 0, "something was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_keep_the_dms_code_and_add_a_hint_of_what_to_do() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-hints");
    let with = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = f.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        run(c)
    };
    #[track_caller]
    fn says(out: &Out, code: &str, hint: &str) {
        assert!(out.stderr.contains(code), "no {code}: {out:?}");
        let line = out.stderr.lines().find(|l| l.starts_with("hint: ")).unwrap_or_default();
        assert!(line.contains(hint), "no hint {hint:?}: {out:?}");
    }
    // Another project: the hint names the one in use.
    let other = "fedcba9876543210fedcba9876543210";
    says(&with(&["instances", "list"], &[("HUAWEICLOUD_SDK_PROJECT_ID", other)]), "APIGW.0302", other);
    // A wrong secret of the right shape and an unknown key look the same on the wire and in the hint.
    let wrong_sk = "abcdefghijABCDEFGHIJ0123456789abcdefghij";
    let bad_sk = with(&["instances", "list"], &[("HUAWEICLOUD_SDK_SK", wrong_sk)]);
    says(&bad_sk, "APIGW.0301", "does not say which");
    let unknown_ak = with(&["instances", "list"], &[("HUAWEICLOUD_SDK_AK", "ABCDEFGHIJ0123456789")]);
    says(&unknown_ak, "APIGW.0301", "does not say which");
    let strip = |o: &Out| o.stderr.replace(&f.cred.access_key, "AK").replace("ABCDEFGHIJ0123456789", "AK");
    let (a, b) = (strip(&bad_sk), strip(&unknown_ak));
    let no_ids =
        |s: &str| s.lines().map(|l| l.split(", request id").next().unwrap_or("").to_owned()).collect::<Vec<_>>();
    assert_eq!(no_ids(&a), no_ids(&b), "the CLI must not tell them apart where the server does not");
    // Where the CLI can honestly tell: a secret key of another shape than this server's.
    says(&with(&["instances", "list"], &[("HUAWEICLOUD_SDK_SK", &wrong_sk[..39])]), "APIGW.0301", "39 characters");
    // A token the server did not issue: get another.
    let mut c = f.command(&["instances", "list"]);
    c.env_remove("HUAWEICLOUD_SDK_AK").env_remove("HUAWEICLOUD_SDK_SK").env("KAFKA_TASKS_TOKEN", "not-a-token");
    says(&run(c), "APIGW.0301", "kafka-tasks token create");

    // A waiting scheduled task: cancel it first.
    let job = f.json(&["reassign", "-i", &inst, "--topic", "t", "--brokers", "0,1", "--at", "+2h"]);
    let job = job["schedule_id"].as_str().expect("schedule_id").to_owned();
    let refused = f.run(&["scheduled", "delete", "-i", &inst, &job]);
    says(&refused, "DMS.00400017", &format!("kafka-tasks scheduled cancel -i {inst} {job}"));
    let past = f.run(&["scheduled", "reschedule", "-i", &inst, &job, "--at", "-1h"]);
    assert!(past.code == 2 && past.stderr.contains("not ahead") && past.stderr.contains("+1h"), "{past:?}");

    // An operation on a busy instance names its status and the task that holds it.
    f.json(&["restart", "-i", &inst]);
    let busy = f.run(&["configs", "set", "-i", &inst, "log.retention.hours=24"]);
    says(&busy, "DMS.00400026", "the instance is RESTARTING: task ");
    assert!(busy.stderr.contains("restartInstance") && busy.stderr.contains("kafka-tasks tasks wait -i"), "{busy:?}");

    // Flags: the allowed values, and an endpoint without its scheme.
    let limit = f.run(&["tasks", "list", "-i", &inst, "--limit", "500"]);
    assert!(limit.code == 2 && limit.stderr.contains("1..=100"), "{limit:?}");
    let status = f.run(&["tasks", "delete", "-i", &inst, "--before", "now", "--status", "DONE"]);
    assert!(status.code == 2 && status.stderr.contains("SUCCESS, FAILED, CANCELLED"), "{status:?}");
    let bare_host = f.run(&["instances", "list", "--endpoint", "127.0.0.1:8080"]);
    assert!(bare_host.code == 2 && bare_host.stderr.contains("write http://127.0.0.1:8080"), "{bare_host:?}");
}

#[test]
fn a_port_in_use_is_named_and_leaves_no_data_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("dir");
    let mut c = Command::new(bin());
    c.args(["serve", "--listen", &addr]).current_dir(dir.path()).env_remove("KAFKA_TASKS_DATABASE");
    let out = run(c);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains(&format!("cannot listen on {addr}: the address is already in use")), "{out:?}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "something was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_say_what_is_left_and_page_or_read_all_and_show_takes_i() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-pages");
    for on in ["on", "off", "on", "off", "on", "off", "on", "off", "on", "off", "on"] {
        f.json(&["autotopic", "-i", &inst, on, "--wait"]);
    }
    let first = f.run(&["tasks", "list", "-i", &inst]).ok();
    assert!(first.stdout.contains("10 of 12 tasks; more with --page 2 or --all"), "{}", first.stdout);
    let second = f.json(&["tasks", "list", "-i", &inst, "--page", "2"]);
    assert_eq!(second, f.get(&format!("{}?offset=11", tasks_path(&inst))).await);
    assert_eq!(second["tasks"].as_array().map(Vec::len), Some(2));
    let last = f.run(&["tasks", "list", "-i", &inst, "--page", "2"]).ok();
    assert!(last.stdout.contains("2 of 12 tasks") && !last.stdout.contains("more with"), "{}", last.stdout);
    let all = f.json(&["tasks", "list", "-i", &inst, "--all"]);
    let ids: std::collections::HashSet<&str> =
        all["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids.len(), 12, "{all}");
    assert!(f.run(&["tasks", "list", "-i", &inst, "--all"]).ok().stdout.contains("12 of 12 tasks"));

    // `instances show -i` as every other command, and the id alone as before.
    assert_eq!(f.json(&["instances", "show", "-i", &inst]), f.json(&["instances", "show", &inst]));
    let both = f.run(&["instances", "show", "-i", &inst, &inst]);
    assert_eq!(both.code, 2, "{both:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_client_waits_out_429_and_still_follows_its_task() {
    let f = Fixture::start_with(&["--rate-limit-per-key", "1", "--rate-limit-burst", "1"]);
    let created = f.run(&["instances", "create", "--name", "cli-throttled", "--wait", "-o", "json"]);
    assert_eq!(created.code, 0, "{created:?}");
    let inst = created.json()["instance_id"].as_str().expect("instance_id").to_owned();
    let listed = f.run(&["tasks", "list", "-i", &inst, "-o", "json"]).ok();
    assert_eq!(listed.json()["tasks"][0]["status"], "SUCCESS");
    let log = std::fs::read_to_string(&f.server.log).unwrap_or_default();
    assert!(log.contains("\"status\":429"), "the limit was never hit, so nothing was tested");
}

/// The shell's completion script as the binary prints it, in a file.
fn completion_script(dir: &std::path::Path, shell: &str) -> std::path::PathBuf {
    let out = run({
        let mut c = Command::new(bin());
        c.args(["completions", shell]);
        c
    });
    assert_eq!(out.code, 0, "{shell}: {out:?}");
    let path = dir.join(format!("kafka-tasks.{shell}"));
    std::fs::write(&path, &out.stdout).expect("script written");
    path
}

/// `PATH` with the built binary first, as `kafka-tasks`.
fn path_with_bin() -> String {
    let bin_dir = std::path::Path::new(bin()).parent().expect("the binary's folder");
    format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default())
}

#[track_caller]
fn require_program(name: &str) {
    let found =
        Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success());
    assert!(found, "{name} is missing: apt-get install -y {name} (scripts/test.sh installs it)");
}

/// What completing `line` (cursor at its end, the last word being completed) offers, as bash's
/// programmable completion computes it: the script sourced, the function that `complete -p`
/// names called with COMP_WORDS/COMP_CWORD/COMP_LINE set as readline sets them.
fn bash_completes(script: &std::path::Path, line: &str) -> String {
    let driver = r#"source "$1"
spec=$(complete -p kafka-tasks) || exit 9
fn=$(printf '%s' "$spec" | sed -E 's/.* -F ([^ ]+) .*/\1/')
read -ra COMP_WORDS <<< "$2"
[[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}
prev=""; (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
"$fn" kafka-tasks "${COMP_WORDS[COMP_CWORD]}" "$prev"
printf '%s\n' "${COMPREPLY[@]}""#;
    let out =
        Command::new("bash").args(["--norc", "-c", driver, "drive"]).arg(script).arg(line).output().expect("bash");
    assert!(out.status.success(), "{line}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completes_past_the_first_word() {
    let dir = tempfile::tempdir().expect("dir");
    let script = completion_script(dir.path(), "bash");
    for (line, want) in [
        ("kafka-tasks sched", "scheduled"),
        ("kafka-tasks tasks ", "delete"),
        ("kafka-tasks tasks delete --", "--dry-run"),
        ("kafka-tasks tasks delete -i x --before 30d --y", "--yes"),
        ("kafka-tasks scheduled reschedule --", "--at"),
        ("kafka-tasks configure --", "--from"),
    ] {
        let offered = bash_completes(&script, line);
        assert!(offered.lines().any(|w| w == want), "bash offers no {want} for {line:?}: {offered:?}");
    }
    // bash --posix (what /bin/sh may be) loads the script too.
    let posix = Command::new("bash")
        .args(["--posix", "-c", "source \"$1\" && complete -p kafka-tasks", "x"])
        .arg(&script)
        .output();
    assert!(posix.is_ok_and(|o| o.status.success()), "the script does not load in POSIX mode");
}

#[test]
fn fish_completes_past_the_first_word() {
    require_program("fish");
    let dir = tempfile::tempdir().expect("dir");
    let script = completion_script(dir.path(), "fish");
    for (line, want) in [("kafka-tasks sched", "scheduled"), ("kafka-tasks tasks delete --", "--dry-run")] {
        let out = Command::new("fish")
            .args(["--no-config", "-c", &format!("source {}; complete -C '{line}'", script.display())])
            .env("PATH", path_with_bin())
            .output()
            .expect("fish");
        let offered = String::from_utf8_lossy(&out.stdout);
        assert!(
            offered.lines().any(|l| l.split('\t').next() == Some(want)),
            "fish offers no {want} for {line:?}: {offered}"
        );
    }
}

#[test]
fn zsh_completes_past_the_first_word_on_a_terminal() {
    require_program("zsh");
    require_program("tmux");
    let dir = tempfile::tempdir().expect("dir");
    let script = completion_script(dir.path(), "zsh");
    // A real zsh on a pty (tmux, on a server of this test's own), Tab pressed as a person does.
    let socket = format!("kafka-tasks-test-{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").args(["-L", &socket]).args(args).output().expect("tmux");
    let shell = format!("env -i PATH={} HOME={} TERM=xterm zsh -f", path_with_bin(), dir.path().display());
    assert!(tmux(&["new-session", "-d", "-x", "200", "-y", "50", &shell]).status.success());
    let setup = format!("autoload -U compinit && compinit -u && source {}", script.display());
    tmux(&["send-keys", &setup, "Enter"]);
    tmux(&["send-keys", "kafka-tasks tasks delete --", "Tab"]);
    let mut screen = String::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p"]).stdout).into_owned();
        if screen.contains("--dry-run") {
            break;
        }
    }
    tmux(&["kill-server"]);
    assert!(screen.contains("--dry-run") && screen.contains("--before"), "zsh offered nothing: {screen}");
}

#[test]
fn a_closed_pipe_ends_the_client_quietly_not_with_a_panic() {
    use std::io::Read;
    let mut child = Command::new(bin())
        .args(["completions", "zsh"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the CLI runs");
    let mut first = [0u8; 1];
    child.stdout.take().expect("stdout").read_exact(&mut first).expect("one byte");
    // The reader is gone (as `| head -c 1` leaves it); the rest of the script hits a closed pipe.
    let out = child.wait_with_output().expect("it ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn help_is_there_for_every_client_command() {
    let commands: &[&[&str]] = &[
        &["tasks"],
        &["tasks", "list"],
        &["tasks", "show"],
        &["tasks", "progress"],
        &["tasks", "delete"],
        &["tasks", "wait"],
        &["scheduled", "list"],
        &["scheduled", "reschedule"],
        &["scheduled", "cancel"],
        &["scheduled", "resume"],
        &["scheduled", "delete"],
        &["instances", "list"],
        &["instances", "show"],
        &["instances", "create"],
        &["instances", "update"],
        &["instances", "delete"],
        &["configs", "get"],
        &["configs", "set"],
        &["autotopic"],
        &["resize"],
        &["reassign"],
        &["upgrade"],
        &["restart"],
        &["retention", "show"],
        &["retention", "set"],
        &["retention", "reset"],
        &["control", "faults", "list"],
        &["control", "faults", "replace"],
        &["control", "faults", "add"],
        &["control", "faults", "remove"],
        &["control", "clock", "advance"],
        &["control", "clock", "set"],
        &["control", "reset"],
        &["completions"],
    ];
    for args in commands {
        let out = run({
            let mut c = Command::new(bin());
            c.args(*args).arg("--help");
            c
        });
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stdout.contains("Usage: kafka-tasks"), "{args:?}: {}", out.stdout);
    }
}

/// `tasks wait` follows the instance's event stream when it can, and polls when the server
/// refuses the stream (here: its one stream slot is taken), with the same result.
#[tokio::test(flavor = "multi_thread")]
async fn wait_follows_the_event_stream_and_polls_when_it_is_refused() {
    let f = Fixture::start_with(&["--event-streams-max", "1"]);
    let inst = f.running_instance("cli-events");
    let set = f.run(&["configs", "set", "-i", &inst, "log.retention.hours=12", "--wait"]).ok();
    assert!(set.stderr.lines().next().is_some_and(|l| l.contains("(following the event stream)")), "{}", set.stderr);
    assert!(set.stderr.lines().last().is_some_and(|l| l.contains("SUCCESS") && l.contains("100%")), "{}", set.stderr);

    // Take the one slot.
    let path = format!("/v2/{PROJECT}/tasks/events");
    let mut req = kafka_tasks::tls::http_client().get(format!("{}{path}", f.server.base));
    for (k, v) in f.api.signed_headers("GET", &path, b"") {
        req = req.header(k, v);
    }
    let held = req.send().await.expect("stream opened");
    assert_eq!(held.status(), 200);
    let set = f.run(&["configs", "set", "-i", &inst, "log.retention.hours=24", "--wait"]).ok();
    assert!(set.stderr.lines().next().is_some_and(|l| l.contains("(polling)")), "{}", set.stderr);
    assert!(set.stderr.lines().last().is_some_and(|l| l.contains("SUCCESS") && l.contains("100%")), "{}", set.stderr);
    drop(held);
}

/// Line rewriting, an erased line, a window title, a clipboard write (OSC 52), a C1 CSI, DEL
/// and a right-to-left override: what a hostile value may hold.
const HOSTILE: &str =
    "all good\r\x1b[2K\x1b]0;owned\x07\x1b]52;c;cm0gLXJmIH4=\x07\u{9b}31m\u{85}\x7f\t\u{202e}lave\u{2066}x\u{2069}";

/// Asserts that `text` holds nothing a terminal acts on: no control character but the line
/// ends, no bidirectional override or isolate.
#[track_caller]
fn assert_inert(text: &str, what: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "{what} holds {bad:?}: {text:?}");
}

/// A value stored through the API by someone with an operator key reaches whoever reads it
/// with the CLI as visible escapes, never as raw control sequences; `-o json` keeps it exact.
#[tokio::test(flavor = "multi_thread")]
async fn values_from_the_server_cannot_drive_the_terminal() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-hostile");
    let path = format!("/v2/{PROJECT}/instances/{inst}");
    let body = serde_json::json!({ "description": HOSTILE }).to_string();
    let r = f.api.send("PUT", &path, Some(&body)).await.expect("the API answers");
    assert!(r.status < 300, "{}", r.text);
    assert_eq!(f.get(&path).await["description"], HOSTILE, "the API keeps the value as given");

    let shown = f.run(&["instances", "show", &inst]).ok();
    assert_inert(&shown.stdout, "instances show");
    assert_inert(&shown.stderr, "instances show (stderr)");
    let line = shown.stdout.lines().find(|l| l.starts_with("description")).unwrap_or_default();
    assert!(line.contains(r"all good\r\x1b[2K\x1b]0;owned\x07\x1b]52;c;cm0gLXJmIH4=\x07"), "escaped visibly: {line}");
    assert!(line.contains(r"\u{9b}31m\u{85}\x7f\t\u{202e}lave\u{2066}x\u{2069}"), "escaped visibly: {line}");

    let json = f.run(&["instances", "show", &inst, "-o", "json"]).ok();
    assert_inert(&json.stdout, "instances show -o json");
    assert_eq!(json.json()["description"], HOSTILE, "-o json is the value exactly");
    assert_eq!(json.json(), f.get(&path).await);
}

/// A tiny HTTP server on loopback that answers every request from `route(method, path)`:
/// (status, JSON body). It stops with the test process.
fn hostile_server(route: fn(&str, &str) -> (u16, String)) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let mut words = first.split_whitespace();
            let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
            let (status, body) = route(method, target.split('?').next().unwrap_or_default());
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// The CLI with `args`, told to use the test server at `base` with a token and nothing else
/// from this environment.
fn against(base: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KAFKA_TASKS_ENDPOINT", base)
        .env("KAFKA_TASKS_TOKEN", "t")
        .env("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT);
    c
}

/// A server that answers with hostile values everywhere: task and instance lists, a task, its
/// progress (a FAILED task whose step is hostile), the retention policy, and errors whose code,
/// message and request id are.
fn hostile_route(_method: &str, path: &str) -> (u16, String) {
    use serde_json::json;
    let task = json!({"id": HOSTILE, "name": HOSTILE, "status": "FAILED", "user_name": HOSTILE,
                      "user_id": HOSTILE, "params": HOSTILE, "created_at": "2026-01-01T00:00:00.000Z",
                      "updated_at": HOSTILE});
    let (status, body) = if path.ends_with("/tasks/events") {
        (404, json!({"error_code": "DMS.00404001", "error_msg": "no stream"}))
    } else if path.ends_with("/progress") {
        (
            200,
            json!({"progress_percentage": 50, "remain_time": 5, "step_list": [{"name": HOSTILE, "statue": "FAILED"}]}),
        )
    } else if path.ends_with("/tasks/retention") {
        (200, json!({"source": HOSTILE, "policy": {"max_age_days": 3, "overrides": {HOSTILE: 1}}}))
    } else if path.ends_with("/instances") {
        let one = json!({"instance_id": HOSTILE, "name": HOSTILE, "status": HOSTILE, "engine_version": HOSTILE,
                         "storage_space": HOSTILE});
        (200, json!({"instance_num": 1, "instances": [one]}))
    } else if path.contains("/tasks/") {
        (200, json!({"task_count": "1", "tasks": [task]}))
    } else if path.ends_with("/tasks") {
        (200, json!({"task_count": HOSTILE, "tasks": [task]}))
    } else {
        (400, json!({"error_code": HOSTILE, "error_msg": HOSTILE, "request_id": HOSTILE}))
    };
    (status, body.to_string())
}

/// What a hostile (or compromised) server answers reaches stdout and stderr inert: tables,
/// detail views, the wait's progress lines, the failure and the error line.
#[test]
fn a_hostile_server_cannot_drive_the_terminal_through_any_output() {
    let base = hostile_server(hostile_route);
    let inst = "11111111-2222-3333-4444-555555555555";
    let task = "8abfa7b372160bfd0172165864064079";
    let cli = |args: &[&str]| run(against(&base, args));
    let commands: &[&[&str]] = &[
        &["tasks", "list", "-i", inst],
        &["tasks", "show", "-i", inst, task],
        &["tasks", "progress", "-i", inst, task],
        &["tasks", "wait", "-i", inst, task],
        &["instances", "show", inst],
        &["instances", "list"],
        &["retention", "show"],
        &["tasks", "list", "-i", inst, "-o", "json"],
    ];
    for args in commands {
        let out = cli(args);
        assert!(!out.stdout.is_empty() || !out.stderr.is_empty(), "{args:?} printed nothing");
        assert_inert(&out.stdout, &format!("{args:?} stdout"));
        assert_inert(&out.stderr, &format!("{args:?} stderr"));
    }
    let refused = cli(&["instances", "show", inst]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.starts_with(r"error: all good\r\x1b[2K"), "{}", refused.stderr);
    assert_eq!(refused.stderr.lines().count(), 1, "one error line: {}", refused.stderr);
    let failed = cli(&["tasks", "wait", "-i", inst, task]);
    assert_eq!(failed.code, 3, "{failed:?}");
    assert!(failed.stderr.contains(r"FAILED at step all good\r\x1b[2K"), "{}", failed.stderr);
    let json = cli(&["tasks", "list", "-i", inst, "-o", "json"]).ok();
    assert_eq!(json.json()["tasks"][0]["name"], HOSTILE, "-o json is the answer exactly");
}

/// DELETEs the answer-less server below was sent.
static DELETES_SENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A server whose bulk delete answers without the dry run's count (a shape this service never
/// sends): `{"deleted": 0, "more": false}` to every DELETE.
fn countless_route(method: &str, _path: &str) -> (u16, String) {
    if method == "DELETE" {
        DELETES_SENT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return (200, r#"{"deleted":0,"more":false}"#.into());
    }
    (404, r#"{"error_code":"DMS.00404022","error_msg":"no"}"#.into())
}

/// A bulk delete's dry run is read into its type before anything is deleted: an answer without
/// the count of what matches ends the command (exit 4, the shape named) instead of passing for
/// "nothing matches", which would skip the question and send the real delete.
#[test]
fn a_bulk_delete_whose_dry_run_has_no_count_deletes_nothing() {
    let base = hostile_server(countless_route);
    let out = run(against(&base, &["tasks", "delete", "-i", "11111111-2222-3333-4444-555555555555", "--before", "1d"]));
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains("not of the expected shape: missing field"), "{}", out.stderr);
    assert_eq!(DELETES_SENT.load(std::sync::atomic::Ordering::SeqCst), 1, "the dry run only");
}

/// `cluster bind|show|unbind` against the Kafka test cluster (connected mode), when there is one
/// (`KAFKA_TASKS_TEST_KAFKA`; required in CI): the JSON is the API's, the table names the brokers,
/// and the password, read from stdin, is never printed.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_commands_bind_show_and_unbind() {
    let f = Fixture::start_with(&["--cluster-allow", "127.0.0.1"]);
    let inst = f.running_instance("cli-cluster");
    let path = format!("/v2/{PROJECT}/instances/{inst}/cluster");
    let unbound = f.run(&["cluster", "show", "-i", &inst]);
    assert_eq!(unbound.code, 1, "{unbound:?}");
    assert!(unbound.stderr.contains("DMS.00404090"), "{unbound:?}");
    let Ok(env) = std::env::var("KAFKA_TASKS_TEST_KAFKA") else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "KAFKA_TASKS_TEST_KAFKA must be set in CI");
        eprintln!("skipped (the bound part): no Kafka test cluster");
        return;
    };
    let env = std::fs::read_to_string(env).expect("cluster.env");
    let get = |k: &str| {
        env.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(|v| v.replace("\\,", ",")).expect("entry")
    };
    let scram = std::fs::read_to_string(get("KAFKA_SCRAM_FILE")).expect("scram file");
    let scram_get =
        |k: &str| scram.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_owned).expect("entry");
    let (user, password) = (scram_get("KAFKA_SCRAM_USER"), scram_get("KAFKA_SCRAM_PASSWORD"));
    let mut bind = f.command(&[
        "cluster",
        "bind",
        "-i",
        &inst,
        "--bootstrap-servers",
        &get("KAFKA_SASL_BOOTSTRAP"),
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-username",
        &user,
        "--sasl-password-stdin",
        "--output",
        "json",
    ]);
    bind.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = bind.spawn().expect("the CLI runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{password}").expect("password written");
    }
    let out = child.wait_with_output().expect("the CLI ends");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(&password), "the password was printed");
    let bound: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(bound["cluster"]["cluster_id"], get("KAFKA_CLUSTER_ID").as_str());
    let shown = f.json(&["cluster", "show", "-i", &inst]);
    assert_eq!(shown["binding"], f.get(&path).await["binding"]);
    let table = f.run(&["cluster", "show", "-i", &inst]).ok();
    for want in ["SASL_PLAINTEXT", "true", "1@127.0.0.1", "sealed", user.as_str()] {
        assert!(table.stdout.contains(want), "{want} missing from {}", table.stdout);
    }
    assert!(!table.stdout.contains(&password));
    let unbound = f.run(&["cluster", "unbind", "-i", &inst]).ok();
    assert!(unbound.stdout.contains("unbound"), "{}", unbound.stdout);
    assert_eq!(f.status_of(&path).await, 404);
}

/// `--signing` signs with every mode of the official SDKs: each creates an instance the API
/// then shows, each with a wrong secret is refused, and V11 for another region is refused with
/// the region the server expects.
#[tokio::test(flavor = "multi_thread")]
async fn every_signing_mode_of_the_sdks_signs_a_write_and_a_read() {
    let f = Fixture::start_with(&["--signing-region", "eu-west-101", "--signing-service", "kafka"]);
    for mode in ["hmac-sha256", "hmac-sm3", "ecdsa-p256-sha256", "sm2-sm3", "v11-hmac-sha256"] {
        let with_mode = |cmd: &[&str]| -> Vec<String> {
            let flags = ["--signing", mode, "--signing-region", "eu-west-101", "--signing-service", "kafka"];
            cmd.iter().chain(&flags).map(|s| (*s).to_owned()).collect()
        };
        let name = format!("cli-signing-{mode}");
        let create = with_mode(&["instances", "create", "--output", "json", "--name", &name]);
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        let created = f.run(&create).ok().json();
        let id = created["instance_id"].as_str().unwrap_or_else(|| panic!("{mode}: {created}"));
        let shown = f.get(&format!("/v2/{PROJECT}/instances/{id}")).await;
        assert_eq!(shown["name"], name.as_str(), "{mode}");
        let list = with_mode(&["instances", "list", "--output", "json"]);
        let list: Vec<&str> = list.iter().map(String::as_str).collect();
        assert!(f.run(&list).ok().stdout.contains(id), "{mode}");

        let wrong = run({
            let mut c = f.command(&list);
            c.env("HUAWEICLOUD_SDK_SK", "not-the-secret");
            c
        });
        assert_eq!(wrong.code, 1, "{mode}: {wrong:?}");
        assert!(wrong.stderr.contains("APIGW.0301"), "{mode}: {}", wrong.stderr);
    }
    let elsewhere = f.run(&["instances", "list", "--signing", "v11-hmac-sha256"]);
    assert_eq!(elsewhere.code, 1, "{elsewhere:?}");
    assert!(elsewhere.stderr.contains("\"eu-west-101\"") && elsewhere.stderr.contains("\"kafka\""), "{elsewhere:?}");
    let bad = f.run(&["instances", "list", "--signing", "hmac-md5"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

/// `control …` against a server with `--test-control`: an injected 429 the client waits out
/// (as it does a real one), an injected step failure that `--wait` reports with exit 3, the
/// clock moved and refused backwards, and the reset.
#[tokio::test(flavor = "multi_thread")]
async fn control_commands_inject_faults_move_the_clock_and_reset() {
    let f = Fixture::start_with(&["--test-control"]);
    let inst = f.running_instance("cli-control");
    let rule = r#"{"operation":"ListInstances","error":{"status_code":429,"retry_after":1},"times":2}"#;
    let set = f.json(&["control", "faults", "replace", rule]);
    assert_eq!(set["rules"][0]["error"]["error_code"], "APIGW.0308", "{set}");
    let listed = f.json(&["instances", "list"]);
    assert_eq!(listed["instances"][0]["instance_id"], inst.as_str(), "the client waited out both 429s");
    let rules = f.json(&["control", "faults", "list"]);
    assert_eq!(rules["rules"][0]["fired"], 2, "{rules}");
    let people = f.run(&["control", "faults", "list"]).ok();
    assert!(people.stdout.contains("fired 2/2 (retired)"), "{}", people.stdout);

    let fail = r#"{"task_name":"restartInstance","fail_step":{"reason":"injected: broker 1 is gone"}}"#;
    f.run(&["control", "faults", "replace", fail]).ok();
    let restarted = f.run(&["restart", "-i", &inst, "--wait"]);
    assert_eq!(restarted.code, 3, "{restarted:?}");
    assert!(restarted.stderr.contains("FAILED"), "{}", restarted.stderr);
    let removed = f.json(&["control", "faults", "remove"]);
    assert_eq!(removed["removed"], 1, "{removed}");

    let moved = f.json(&["control", "clock", "advance", "2h"]);
    assert!(moved["offset_ms"].as_i64().is_some_and(|o| o >= 7_200_000), "{moved}");
    let back = f.run(&["control", "clock", "set", "2020-01-01T00:00:00Z"]);
    assert_eq!(back.code, 1, "{back:?}");
    assert!(back.stderr.contains("DMS.00400800") && back.stderr.contains("go back"), "{}", back.stderr);
    let bad = f.run(&["control", "faults", "add", "not json"]);
    assert_eq!(bad.code, 2, "{bad:?}");

    let saved = f.json(&["control", "snapshot", "save", "one-instance"]);
    assert_eq!(saved["name"], "one-instance", "{saved}");
    let reset = f.run(&["control", "reset"]).ok();
    assert!(reset.stdout.contains("database reset in"), "{}", reset.stdout);
    assert_eq!(f.json(&["instances", "list"])["instance_num"], 0);

    let listed = f.run(&["control", "snapshot", "list"]).ok();
    assert!(listed.stdout.starts_with("NAME") && listed.stdout.contains("one-instance"), "{}", listed.stdout);
    let restored = f.run(&["control", "snapshot", "restore", "one-instance"]).ok();
    assert!(restored.stdout.contains("restored snapshot one-instance in"), "{}", restored.stdout);
    assert_eq!(f.json(&["instances", "list"])["instances"][0]["instance_id"], inst.as_str(), "the state is back");
    let bad = f.run(&["control", "snapshot", "restore", "../reset"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    f.run(&["control", "snapshot", "delete", "one-instance"]).ok();
    let gone = f.run(&["control", "snapshot", "restore", "one-instance"]);
    assert_eq!(gone.code, 1, "{gone:?}");
    assert!(gone.stderr.contains("DMS.00404800"), "{}", gone.stderr);
    assert_eq!(f.json(&["control", "snapshot", "list"])["snapshots"], serde_json::json!([]));
}

/// `tasks events -o json` for one instance: each event as sent, one a line.
fn events_of(out: &Out) -> Vec<Value> {
    out.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect()
}

/// `tasks events` replays the log from `--after 0`, resumes exactly after an id, and follows
/// through streams the server ends every second (its lifetime): nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn tasks_events_replays_resumes_and_follows_through_streams_that_end() {
    let f = Fixture::start_with(&["--event-stream-lifetime-secs", "1"]);
    let inst = f.running_instance("cli-follow");
    f.json(&["configs", "set", "-i", &inst, "log.retention.hours=12", "--wait"]);
    let all =
        events_of(&f.run(&["tasks", "events", "-i", &inst, "--after", "0", "-o", "json", "--until-idle", "2"]).ok());
    // Every task the API lists was created and finished on the stream, in that order.
    let listed = f.get(&tasks_path(&inst)).await;
    let ids: Vec<&str> = listed["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{listed}");
    for id in ids {
        let of: Vec<&str> =
            all.iter().filter(|e| e["data"]["task_id"] == id).filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(of.first(), Some(&"task.created"), "{id}: {of:?}");
        assert_eq!(of.last(), Some(&"task.finished"), "{id}: {of:?}");
    }
    let third = all[2]["id"].as_str().expect("an id");
    let rest = f.run(&["tasks", "events", "-i", &inst, "--after", third, "-o", "json", "--count", "3"]).ok();
    assert_eq!(events_of(&rest), all[3..6].to_vec(), "resumed just after the third event");

    // A follower from now on, while three operations come more than a stream's lifetime apart.
    let mut follower = f.command(&["tasks", "events", "-i", &inst, "-o", "json", "--until-idle", "4"]);
    let follower = follower.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    for hours in ["24", "36", "48"] {
        f.json(&["configs", "set", "-i", &inst, &format!("log.retention.hours={hours}"), "--wait"]);
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    let out = follower.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let followed =
        events_of(&Out { code: 0, stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::new() });
    let replay =
        events_of(&f.run(&["tasks", "events", "-i", &inst, "--after", "0", "-o", "json", "--until-idle", "2"]).ok());
    let new: Vec<Value> = replay[all.len()..].to_vec();
    assert_eq!(new.iter().filter(|e| e["event"] == "task.finished").count(), 3, "{new:?}");
    assert_eq!(followed, new, "the follower saw every new event once, in order, across streams that ended");
}

/// Ctrl-C stops a follower quietly with exit 0; an unknown instance is the API's 404.
#[tokio::test(flavor = "multi_thread")]
async fn tasks_events_stops_quietly_at_ctrl_c_and_names_an_unknown_instance() {
    let f = Fixture::start();
    let inst = f.running_instance("cli-ctrl-c");
    let mut child = f.command(&["tasks", "events", "-i", &inst]);
    let child = child.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "quiet: {}", String::from_utf8_lossy(&out.stderr));

    let unknown = f.run(&["tasks", "events", "-i", "00000000-0000-0000-0000-000000000000", "--count", "1"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(unknown.stderr.contains("DMS.00404022"), "{}", unknown.stderr);
}

/// A stream server on loopback: the first stream sends two hostile events and breaks in the
/// middle of a third; the second (which must resume after the second event) sends the third
/// whole and ends; any later one is refused with a 503. Returns its address and the query
/// strings it was asked with.
fn breaking_stream_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let target = first.split_whitespace().nth(1).unwrap_or_default();
            let query = target.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
            let n = {
                let mut asked = log.lock().unwrap();
                asked.push(query);
                asked.len()
            };
            let event = |id: &str, name: &str| {
                // Every member of the events' data, each string hostile (the status is one of
                // the task statuses, or the data would not be an event's).
                let data = serde_json::json!({"task_id": HOSTILE, "instance_id": HOSTILE, "name": HOSTILE,
                    "status": "EXECUTING", "step": {"index": 0, "name": HOSTILE, "status": "COMPLETED"},
                    "steps_done": 1, "steps": 2, "progress": 50, "created_at": HOSTILE, "updated_at": HOSTILE,
                    "at": "2026-11-28T09:12:41.023Z"});
                format!("id: {id}\nevent: {name}\ndata: {data}\n\n")
            };
            let body = match n {
                1 => format!(
                    "{}: keep-alive\n\n{}id: a3\nevent: step.sta",
                    event("a1", "task.created"),
                    event("a2", HOSTILE)
                ),
                2 => event("a3", "step.started"),
                _ => {
                    let _ = write!(stream, "HTTP/1.1 503 X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}");
                    continue;
                }
            };
            let _ =
                write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}");
        }
    });
    (format!("http://{addr}"), asked)
}

/// A stream that breaks in the middle of an event is resumed after the last whole one (the
/// cut one is not printed), and what a hostile server sends reaches the terminal inert in the
/// table and exact in `-o json`.
#[test]
fn tasks_events_resumes_a_broken_stream_and_keeps_hostile_events_inert() {
    for json in [false, true] {
        let (base, asked) = breaking_stream_server();
        let mut c = against(&base, &["tasks", "events", "-i", "11111111-2222-3333-4444-555555555555", "--count", "3"]);
        if json {
            c.args(["-o", "json"]);
        }
        let out = run(c).ok();
        assert_inert(&out.stdout, "tasks events stdout");
        assert_inert(&out.stderr, "tasks events stderr");
        assert_eq!(asked.lock().unwrap().clone(), ["", "after=a2"], "resumed after the last whole event");
        if json {
            let events = events_of(&out);
            let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
            assert_eq!(ids, ["a1", "a2", "a3"]);
            assert_eq!(events[1]["event"], HOSTILE, "-o json is the event exactly");
            assert_eq!(events[0]["data"]["step"]["name"], HOSTILE);
        } else {
            let lines: Vec<&str> = out.stdout.lines().collect();
            assert_eq!(lines.len(), 4, "a header and three events: {}", out.stdout);
            assert!(lines[0].starts_with("TIME") && lines[0].contains("STATUS"), "{}", lines[0]);
            assert!(lines[1].contains("task.created") && lines[1].contains(r"1/2 all good\r\x1b[2K"), "{}", lines[1]);
            assert!(lines[1].contains(":41.023"), "the event's time, local: {}", lines[1]);
            assert!(lines[1].ends_with("EXECUTING"), "{}", lines[1]);
            assert!(lines[3].contains("step.started"), "{}", lines[3]);
        }
    }
}
