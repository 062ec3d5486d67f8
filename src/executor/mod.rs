//! Executors: what runs an operation's steps. The engine owns the lifecycle (leases,
//! attempts, timeouts, the instance change at the last step); an executor only does a step's
//! work and says how it went.
//!
//! - `simulate` (the default for every operation): the step's planned duration passes;
//! - `exec` ([`exec`]): a program per step, or once per task, fed the task as data;
//! - `webhook` ([`webhook`]): the step is POSTed, signed, to a receiver, which ends it through the
//!   authenticated callback endpoint (`POST …/tasks/{task_id}/executor-callback`).
//!
//! Which operation uses which is read from the TOML file named by `serve --executors FILE`.

pub mod exec;
pub mod kafka;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::domain::TaskRecord;
use crate::domain::operation::{OpSet, TASK_NAMES};
use crate::storage::RunStore;

/// The most output bytes kept with a task for operators (the tail, at the end of a run).
pub const OUTPUT_TAIL: usize = 4096;
/// The most bytes of stderr a failure's reason quotes.
pub const REASON_TAIL: usize = 1024;
/// The longest message an executor's progress line may carry (longer ones are cut).
pub const MAX_MESSAGE: usize = 512;

/// The executor file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    defaults: Defaults,
    /// By task name (`restartInstance`, `kafkaConfigModify`, …).
    #[serde(default)]
    operations: BTreeMap<String, OpConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    /// A step running longer fails its task.
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    /// How long a program has between SIGTERM and SIGKILL (timeout, server shutdown).
    #[serde(default = "default_grace")]
    kill_grace_ms: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults { timeout_secs: default_timeout(), kill_grace_ms: default_grace() }
    }
}

fn default_timeout() -> u64 {
    3600
}

fn default_grace() -> u64 {
    5000
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum OpConfig {
    Simulate {},
    Exec {
        program: PathBuf,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        mode: exec::Mode,
        #[serde(default)]
        env: BTreeMap<String, String>,
        working_dir: Option<PathBuf>,
        timeout_secs: Option<u64>,
    },
    Webhook {
        url: String,
        /// The environment variable that holds the HMAC key (never the key itself in the file).
        secret_env: String,
        /// Where the receiver reaches this service, to build the callback URL it is sent.
        callback_base: Option<String>,
        /// For an https `url`: a CA certificate file (PEM) trusted besides the system's roots.
        ca_file: Option<std::path::PathBuf>,
        timeout_secs: Option<u64>,
    },
}

/// How one operation's steps are run.
#[derive(Debug)]
pub struct Executor {
    pub kind: Kind,
    /// Per step.
    pub timeout: Duration,
}

#[derive(Debug)]
pub enum Kind {
    Exec(exec::Spec),
    Webhook(webhook::Spec),
    /// Connected mode: the operation is done on the instance's bound cluster.
    Kafka(kafka::Spec),
}

impl Executor {
    /// The executor kind, as the metrics label it.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Exec(_) => "exec",
            Kind::Webhook(_) => "webhook",
            Kind::Kafka(_) => "kafka",
        }
    }

    /// Whether one run covers the whole task (the program reports step changes).
    pub fn per_task(&self) -> bool {
        matches!(&self.kind, Kind::Exec(s) if s.mode == exec::Mode::Task)
    }

    /// Runs one step (or, per task, the rest of the task) until it ends, fails, or `stop`
    /// turns true (a timeout or the server's shutdown), reporting progress on `events`.
    pub async fn run(&self, req: &StepRun<'_>, events: mpsc::Sender<Event>, stop: watch::Receiver<bool>) -> Outcome {
        match &self.kind {
            Kind::Exec(spec) => exec::run(spec, req, events, stop).await,
            Kind::Webhook(spec) => webhook::run(spec, req, stop).await,
            Kind::Kafka(spec) => kafka::run(spec, req, events, stop).await,
        }
    }
}

/// The executors of every operation; an operation not named is simulated.
#[derive(Debug, Default)]
pub struct Executors {
    by_op: HashMap<&'static str, Arc<Executor>>,
    pub kill_grace: Duration,
}

impl Executors {
    /// Every operation simulated: the behaviour without `--executors`.
    pub fn simulate_all() -> Self {
        Executors { by_op: HashMap::new(), kill_grace: Duration::from_millis(default_grace()) }
    }

    /// Reads and checks the executor file: every operation named must exist, every program
    /// must be an executable file given by absolute path, every webhook's secret must be set.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the executor file {}: {e}", path.display()))?;
        Self::parse(&text, |name| std::env::var(name).ok())
            .map_err(|e| anyhow::anyhow!("executor file {}: {e}", path.display()))
    }

    /// [`load`](Self::load) from text, with `env` for webhook secrets.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let file: ConfigFile = toml::from_str(text)?;
        let d = file.defaults;
        anyhow::ensure!(d.timeout_secs >= 1, "defaults.timeout_secs must be at least 1");
        let mut by_op = HashMap::new();
        for (name, op) in file.operations {
            let Some(task_name) = TASK_NAMES.iter().copied().find(|n| *n == name) else {
                anyhow::bail!("unknown operation {name:?}: one of {}", TASK_NAMES.join(", "));
            };
            let timeout = |t: Option<u64>| -> anyhow::Result<Duration> {
                let secs = t.unwrap_or(d.timeout_secs);
                anyhow::ensure!(secs >= 1, "{name}: timeout_secs must be at least 1");
                Ok(Duration::from_secs(secs))
            };
            let executor = match op {
                OpConfig::Simulate {} => continue,
                OpConfig::Exec { program, args, mode, env, working_dir, timeout_secs } => Executor {
                    kind: Kind::Exec(exec::Spec::new(&name, program, args, mode, env, working_dir)?),
                    timeout: timeout(timeout_secs)?,
                },
                OpConfig::Webhook { url, secret_env, callback_base, ca_file, timeout_secs } => Executor {
                    kind: Kind::Webhook(webhook::Spec::new(
                        &name,
                        url,
                        &secret_env,
                        callback_base,
                        ca_file.as_deref(),
                        &env,
                    )?),
                    timeout: timeout(timeout_secs)?,
                },
            };
            by_op.insert(task_name, Arc::new(executor));
        }
        Ok(Executors { by_op, kill_grace: Duration::from_millis(d.kill_grace_ms) })
    }

    /// The executor of the operation named `task_name`; `None` when it is simulated.
    pub fn get(&self, task_name: &str) -> Option<Arc<Executor>> {
        self.by_op.get(task_name).cloned()
    }

    /// Each operation an executor runs, with its executor's kind, in task-name order.
    pub fn describe(&self) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = self.by_op.iter().map(|(op, e)| (*op, e.kind_name())).collect();
        v.sort();
        v
    }

    /// The operations an executor runs.
    pub fn executed(&self) -> OpSet {
        let mut set = OpSet::EMPTY;
        for name in self.by_op.keys() {
            set.insert(name);
        }
        set
    }
}

/// One step handed to an executor.
pub struct StepRun<'a> {
    pub task: &'a TaskRecord,
    /// The instance as ShowInstance returns it.
    pub instance: &'a Value,
    /// The task name of the operation.
    pub operation: &'static str,
    pub step: usize,
    pub step_name: &'a str,
    /// Every step's name, in order (a per-task program reports its way through them).
    pub steps: Vec<&'a str>,
    pub attempt: u32,
    /// A webhook's one-time callback token for this attempt.
    pub token: Option<&'a str>,
    /// Where a webhook receiver reads the attempt's answer back from.
    pub runs: &'a dyn RunStore,
    /// The engine that holds the task's lease, and its clock: what an executor keeps with the
    /// task ([`RunStore::save_state`]) is written under that lease.
    pub owner: &'a str,
    pub clock: &'a crate::domain::clock::Clock,
    /// How often to look for a webhook's answer.
    pub poll: Duration,
    pub kill_grace: Duration,
    /// The task's lease: a run's programs must be gone before another process may take the
    /// task over, so an exec run's watcher kills them once the server has been silent for
    /// half of it (see [`exec`]).
    pub lease: Duration,
}

impl StepRun<'_> {
    /// The task as an executor receives it (on stdin, in a webhook's body): data only.
    pub fn document(&self) -> Value {
        let params: Value = serde_json::from_str(&self.task.params).unwrap_or(Value::Null);
        serde_json::json!({
            "task_id": self.task.id.as_str(),
            "instance_id": self.task.instance_id.as_str(),
            "project_id": self.task.project_id.as_str(),
            "operation": self.operation,
            "step": self.step_name,
            "step_index": self.step,
            "steps": self.steps,
            "attempt": self.attempt,
            "instance": self.instance,
            "params": params,
        })
    }
}

/// What an executor reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Progress {
        progress: Option<u32>,
        message: Option<String>,
    },
    /// A per-task program moved on to the step of this name.
    Step(String),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done {
        tail: String,
    },
    Failed {
        reason: String,
        tail: String,
    },
    /// Stopped on request (a timeout or the server's shutdown): the engine says which.
    Stopped {
        tail: String,
    },
}

/// Keeps the last `cap` bytes written to it.
#[derive(Debug, Clone)]
pub struct Tail {
    buf: std::collections::VecDeque<u8>,
    cap: usize,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Tail { buf: std::collections::VecDeque::with_capacity(cap.min(4096)), cap }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let over = (self.buf.len() + bytes.len()).saturating_sub(self.cap);
        self.buf.drain(..over);
        self.buf.extend(bytes);
    }

    /// The kept bytes as text (a character cut at the front, or invalid UTF-8, is replaced).
    pub fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(self.buf.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Reads one progress line from an executor: `{"progress": 40, "message": "…"}` and/or
/// `{"step": "…"}`. Anything else (not JSON, another shape) is only output.
pub fn parse_line(line: &str) -> Vec<Event> {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(line.trim()) else {
        return Vec::new();
    };
    let mut events = Vec::new();
    if let Some(step) = m.get("step").and_then(Value::as_str) {
        events.push(Event::Step(cut(step, 128)));
    }
    let progress =
        m.get("progress").and_then(Value::as_f64).filter(|p| p.is_finite()).map(|p| p.clamp(0.0, 100.0) as u32);
    let message = m.get("message").and_then(Value::as_str).map(|s| cut(s, MAX_MESSAGE));
    if progress.is_some() || message.is_some() {
        events.push(Event::Progress { progress, message });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_last_bytes_only() {
        let mut t = Tail::new(8);
        t.push(b"hello ");
        t.push(b"world!");
        assert_eq!(t.text(), "o world!");
        t.push(&[b'x'; 100]);
        assert_eq!(t.text(), "xxxxxxxx");
    }

    #[test]
    fn progress_lines_are_read_and_anything_else_is_output() {
        assert_eq!(
            parse_line(r#"{"progress": 140, "message": "half"}"#),
            [Event::Progress { progress: Some(100), message: Some("half".into()) }]
        );
        assert_eq!(parse_line(r#"{"step": "apply_config"}"#), [Event::Step("apply_config".into())]);
        assert!(parse_line("progress 40").is_empty());
        assert!(parse_line("[1,2]").is_empty());
    }

    #[test]
    fn the_executor_file_is_checked() {
        let no_env = |_: &str| None;
        assert!(Executors::parse("", no_env).is_ok_and(|e| e.executed() == OpSet::EMPTY));
        let unknown = Executors::parse("[operations.noSuchOp]\nkind = \"simulate\"\n", no_env);
        assert!(unknown.unwrap_err().to_string().contains("unknown operation"));
        let relative = Executors::parse("[operations.restartInstance]\nkind = \"exec\"\nprogram = \"x.sh\"\n", no_env);
        assert!(relative.unwrap_err().to_string().contains("absolute"));
        let typo =
            Executors::parse("[operations.restartInstance]\nkind = \"exec\"\nprogramme = \"/bin/true\"\n", no_env);
        assert!(typo.is_err());
        let secret =
            "[operations.restartInstance]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret_env = \"S\"\n";
        assert!(Executors::parse(secret, no_env).unwrap_err().to_string().contains("S"));
        let ok = Executors::parse(secret, |_| Some("0123456789abcdef0123".into())).unwrap();
        assert!(ok.executed().contains("restartInstance"));
        assert_eq!(ok.get("restartInstance").map(|e| e.kind_name()), Some("webhook"));
        let exec = Executors::parse(
            "[defaults]\ntimeout_secs = 5\n[operations.kafkaConfigModify]\nkind = \"exec\"\nprogram = \"/bin/true\"\nmode = \"task\"\n",
            no_env,
        )
        .unwrap();
        let e = exec.get("kafkaConfigModify").unwrap();
        assert!(e.per_task() && e.timeout == Duration::from_secs(5));
    }
}
