//! The CLI client: every API call from a terminal or a script, signed with the server's own
//! [`kafka_tasks_wire::signature::Signer`]. The commands and their flags are here; [`http`] holds the
//! connection and credentials, [`output`] the tables, [`wait`] the live progress.
//!
//! Exit codes (scripts may rely on them; docs/cli.md):
//! 0 done · 1 the API refused (4xx) · 2 usage or local configuration · 3 the task FAILED (or was
//! cancelled) · 4 server error (5xx) or no answer · 5 `--timeout` passed while waiting.

pub mod configure;
mod control;
pub mod events;
mod follow;
pub mod hints;
pub mod http;
pub mod output;
pub mod wait;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};

use http::{Api, answer_as};
use kafka_tasks_domain::task::TaskJson;
use kafka_tasks_domain::{CompactTime, now_ms};
use kafka_tasks_wire::cluster::ClusterAnswer;
use kafka_tasks_wire::instance::{ConfigList, CreatedInstance, InstanceJson, InstanceList};
use kafka_tasks_wire::operation::{
    AutoTopicChanged, BatchResults, ConfigsModified, JobId, Outcome, ReassignOutcome, UpgradeVersions,
};
use kafka_tasks_wire::retention::RetentionAnswer;
use kafka_tasks_wire::task::{BulkDeleteAnswer, BulkDeletePreview, JobList, TaskList, TaskProgress};
use output::{Cell, colour_stdout, fields, status, table, when, when_text};

/// Task statuses that end well.
pub const OK_STATUSES: [&str; 1] = ["SUCCESS"];

/// Why a client command did not succeed; each maps to one exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags, missing credentials, an unreadable profile: exit 2.
    Usage(String),
    /// The API answered with an error: exit 1 (4xx) or 4 (5xx).
    /// `hint`: what to do, the CLI's own words ([`hints`]), printed under the error.
    Api { status: u16, code: String, message: String, request_id: Option<String>, hint: Option<String> },
    /// No answer (refused, reset, timed out) or an unreadable one: exit 4.
    Network(String),
    /// The awaited task ended FAILED or CANCELLED: exit 3.
    TaskFailed(String),
    /// `--timeout` passed while the task was still running: exit 5.
    Timeout(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Api { status, .. } if *status >= 500 => 4,
            Failure::Api { .. } => 1,
            Failure::Usage(_) => 2,
            Failure::TaskFailed(_) => 3,
            Failure::Network(_) => 4,
            Failure::Timeout(_) => 5,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Api { status, code, message, request_id, .. } => {
                write!(f, "{code}: {message} (HTTP {status}")?;
                if let Some(id) = request_id {
                    write!(f, ", request id {id}")?;
                }
                f.write_str(")")
            }
            Failure::Usage(m) | Failure::Network(m) | Failure::TaskFailed(m) | Failure::Timeout(m) => f.write_str(m),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and sentences for people.
    Table,
    /// The API's own JSON, for scripts.
    Json,
}

/// Where the service is and who calls it. Secrets come only from the environment or the
/// profiles file, never from flags.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The service's base URL, http or https [env: KAFKA_TASKS_ENDPOINT; default: the profile's
    /// endpoint, else http://127.0.0.1:8080].
    #[arg(long, global = true, env = "KAFKA_TASKS_ENDPOINT", hide_env = true)]
    pub endpoint: Option<String>,
    /// A profile of ~/.config/kafka-tasks/profiles.toml (mode 600; `KAFKA_TASKS_PROFILES` names
    /// another file). Without it: HUAWEICLOUD_SDK_AK + HUAWEICLOUD_SDK_SK, else
    /// KAFKA_TASKS_TOKEN, else the profile `default`.
    #[arg(long, global = true, env = "KAFKA_TASKS_PROFILE")]
    pub profile: Option<String>,
    /// The project (32 hex characters).
    #[arg(long, global = true, env = "HUAWEICLOUD_SDK_PROJECT_ID")]
    pub project_id: Option<String>,
    /// For an https endpoint, a CA certificate file (PEM) to trust besides the system's roots
    /// (a private CA) [env: KAFKA_TASKS_CA_FILE; default: the profile's `ca_file`].
    #[arg(long, global = true, env = "KAFKA_TASKS_CA_FILE", hide_env = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// `table` for people, `json` for the API's own JSON.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table", env = "KAFKA_TASKS_OUTPUT")]
    pub output: Output,
    /// How an AK/SK signs: any mode of the official SDKs.
    #[arg(long, global = true, value_enum, default_value = "hmac-sha256", env = "KAFKA_TASKS_SIGNING")]
    pub signing: http::Signing,
    /// The region a `v11-hmac-sha256` signature is scoped to (the server's --signing-region).
    #[arg(long, global = true, default_value = "cn-north-4", env = "KAFKA_TASKS_SIGNING_REGION")]
    pub signing_region: String,
    /// The service a `v11-hmac-sha256` signature is scoped to (the server's --signing-service).
    #[arg(long, global = true, default_value = "dms", env = "KAFKA_TASKS_SIGNING_SERVICE")]
    pub signing_service: String,
}

/// The instance a command acts on.
#[derive(Debug, Clone, Args)]
pub struct Inst {
    /// The instance id.
    #[arg(long, short = 'i', env = "KAFKA_TASKS_INSTANCE")]
    pub instance: String,
}

/// Waiting for the task an operation starts.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Follow the task until it ends (live bar on a terminal, a line per change otherwise);
    /// exit 3 if it fails.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (exit 5); 0 waits as long as it takes.
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
}

/// Paging and time range of the task lists.
#[derive(Debug, Clone, Args)]
pub struct Page {
    /// At most this many (1-100; the API's default 10).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub limit: Option<u64>,
    /// Skip this many.
    #[arg(long, conflicts_with = "page")]
    pub offset: Option<u64>,
    /// Show page N (1 is the newest), `--limit` a page (10 by default).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub page: Option<u64>,
    /// Every matching task, read 100 at a time.
    #[arg(long, conflicts_with_all = ["limit", "offset", "page"])]
    pub all: bool,
    /// Only tasks created at or after TIME: RFC 3339, local `YYYY-MM-DD HH:MM[:SS]`, `now`, or
    /// an age (`2h` or `-2h`: two hours ago; `+2h`: two hours ahead).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Only tasks created at or before TIME.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Background tasks of an instance: list, show, progress, wait, events, delete.
    Tasks(TasksArgs),
    /// Scheduled tasks of an instance: list, reschedule, cancel, resume, delete.
    Scheduled(ScheduledArgs),
    /// Instances: list, show, create, update, delete.
    Instances(InstancesArgs),
    /// An instance's Kafka configuration: get, set.
    Configs(ConfigsArgs),
    /// Turn automatic topic creation on or off.
    Autotopic(AutotopicArgs),
    /// Grow the disks, add brokers, or change the flavour.
    Resize(ResizeArgs),
    /// Move a topic's partitions to other brokers, now or at a time; or estimate how long it takes.
    Reassign(ReassignArgs),
    /// Upgrade the kernel to the newest build of the instance's engine version, now or at a time.
    Upgrade(UpgradeArgs),
    /// Restart an instance's brokers.
    Restart(RestartArgs),
    /// The project's retention policy: how long finished task records are kept (admin role).
    Retention(RetentionArgs),
    /// The Apache Kafka cluster an instance is bound to (connected mode, admin role).
    Cluster(ClusterArgs),
    /// Write a CLI profile (mode 0600): from a credential file (`--from
    /// data/initial-credential.json`) or from answers to prompts, as `aws configure` does.
    Configure(configure::ConfigureArgs),
    /// Test control of a server started with `serve --test-control`: fault rules, the clock,
    /// reset (admin role).
    Control(control::ControlArgs),
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the binding (never its password) and the cluster as it answers now.
    Show {
        #[command(flatten)]
        inst: Inst,
    },
    /// Bind the instance to a cluster: its operations are then done on it. The cluster must answer.
    Bind {
        #[command(flatten)]
        inst: Inst,
        /// `host:port[,host:port…]`.
        #[arg(long)]
        bootstrap_servers: String,
        /// PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL.
        #[arg(long, default_value = "PLAINTEXT")]
        security_protocol: String,
        /// The SCRAM-SHA-512 user (SASL protocols).
        #[arg(long)]
        sasl_username: Option<String>,
        /// The environment variable of the server's process that holds the password.
        #[arg(long, group = "password")]
        sasl_password_env: Option<String>,
        /// A file on the server (mode 0600) that holds the password.
        #[arg(long, group = "password")]
        sasl_password_file: Option<String>,
        /// Read the password from this client's standard input and send it, to be sealed on the
        /// server (never on a command line).
        #[arg(long, group = "password")]
        sasl_password_stdin: bool,
        /// The CA certificates (PEM) on the server that the cluster's TLS certificates are checked against.
        #[arg(long)]
        ssl_ca_file: Option<String>,
        /// The program on the server that restarts, reconfigures, upgrades and adds brokers and grows
        /// their storage (its interface: examples/broker-control/README.md).
        #[arg(long)]
        broker_control: Option<String>,
    },
    /// Unbind the instance: its next operations are simulated again; the cluster is not touched.
    Unbind {
        #[command(flatten)]
        inst: Inst,
    },
}

impl ClusterCommand {
    fn instance(&self) -> &str {
        match self {
            ClusterCommand::Show { inst } | ClusterCommand::Bind { inst, .. } | ClusterCommand::Unbind { inst } => {
                &inst.instance
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: RetentionCommand,
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Show the policy in force and whether it is the server's default or the project's own.
    Show,
    /// Replace the project's policy (flags left out: that rule does not apply).
    Set {
        /// Remove finished tasks this many days after they ended.
        #[arg(long)]
        max_age_days: Option<u32>,
        /// `NAME=DAYS` or `NAME=forever`: the age for tasks named NAME (repeatable).
        #[arg(long = "override", value_name = "NAME=DAYS")]
        overrides: Vec<String>,
        /// Keep at most this many finished tasks per instance.
        #[arg(long)]
        max_tasks_per_instance: Option<u64>,
    },
    /// Drop the project's policy: the server's default applies again.
    Reset,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: TasksCommand,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List the instance's background tasks, newest first.
    List {
        #[command(flatten)]
        inst: Inst,
        #[command(flatten)]
        page: Page,
    },
    /// Show one task with its parameters.
    Show {
        #[command(flatten)]
        inst: Inst,
        task: String,
    },
    /// Show a task's steps, percentage and remaining time.
    Progress {
        #[command(flatten)]
        inst: Inst,
        task: String,
    },
    /// Delete a finished task's record, or with `--before` every finished task created before
    /// TIME (optionally only of `--status` and `--name`), 1000 per request until none is left.
    /// A bulk delete asks first on a terminal, naming the count (`--yes` skips it); without a
    /// terminal it needs `--yes` to delete more than 10 records. `--dry-run` shows what would go.
    Delete {
        #[command(flatten)]
        inst: Inst,
        #[arg(required_unless_present = "before")]
        task: Option<String>,
        /// Delete the finished tasks created at or before TIME: RFC 3339, local
        /// `YYYY-MM-DD HH:MM[:SS]`, `now`, or an age (`30d`, `-30d`: 30 days ago; `+1h` is ahead).
        #[arg(long, value_name = "TIME", conflicts_with = "task", allow_hyphen_values = true)]
        before: Option<String>,
        /// With --before: only those created at or after TIME.
        #[arg(long, value_name = "TIME", requires = "before", allow_hyphen_values = true)]
        since: Option<String>,
        /// With --before: delete nothing; list what would go and count it (the same query).
        #[arg(long, requires = "before")]
        dry_run: bool,
        /// With --before: do not ask for confirmation (needed without a terminal for more
        /// than 10 records).
        #[arg(long, short = 'y', requires = "before", conflicts_with = "dry_run")]
        yes: bool,
        /// With --before: only these statuses (comma-separated).
        #[arg(long, value_delimiter = ',', requires = "before", ignore_case = true,
              value_parser = ["SUCCESS", "FAILED", "CANCELLED"])]
        status: Vec<String>,
        /// With --before: only tasks of this name.
        #[arg(long, requires = "before")]
        name: Option<String>,
    },
    /// Follow the instance's task events as they happen (time, task, event, step, status; `-o
    /// json`: each event as sent, one a line). Resumes by itself after the last event printed
    /// when the stream ends or breaks; Ctrl-C stops it (exit 0).
    Events {
        #[command(flatten)]
        inst: Inst,
        /// Start just after this event id (`0`: every event the server keeps); without it, from now on.
        #[arg(long, value_name = "ID")]
        after: Option<String>,
        /// Stop (exit 0) after this many seconds without an event.
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
        until_idle: Option<u64>,
        /// Stop (exit 0) after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Follow a task until it ends; exit 3 if it fails.
    Wait {
        #[command(flatten)]
        inst: Inst,
        task: String,
        /// Give up after this many seconds (exit 5); 0 waits as long as it takes.
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
}

#[derive(Debug, Args)]
pub struct ScheduledArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: ScheduledCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScheduledCommand {
    /// List the instance's scheduled tasks.
    List {
        #[command(flatten)]
        inst: Inst,
        #[command(flatten)]
        page: Page,
    },
    /// Move a waiting task to another time (a cancelled one whose time is ahead waits again).
    Reschedule {
        #[command(flatten)]
        inst: Inst,
        task: String,
        /// The new time (see `reassign --at` for the forms).
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        at: String,
    },
    /// Make a cancelled task whose time is still ahead wait again.
    Resume {
        #[command(flatten)]
        inst: Inst,
        task: String,
    },
    /// Cancel a waiting task.
    Cancel {
        #[command(flatten)]
        inst: Inst,
        task: String,
    },
    /// Delete an ended scheduled task's record.
    Delete {
        #[command(flatten)]
        inst: Inst,
        task: String,
    },
}

#[derive(Debug, Args)]
pub struct InstancesArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: InstancesCommand,
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// List the project's instances.
    List,
    /// Show one instance (`-i ID` as every other command, or the id alone).
    Show {
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        instance: Option<String>,
        /// The instance id.
        #[arg(long = "instance", short = 'i', value_name = "INSTANCE", env = "KAFKA_TASKS_INSTANCE")]
        id: Option<String>,
    },
    /// Create an instance (admin role); `--wait` follows its createInstance task.
    Create {
        #[arg(long)]
        name: String,
        /// `2.7` or `3.x`.
        #[arg(long, default_value = "2.7")]
        engine_version: String,
        #[arg(long, default_value_t = 3)]
        broker_num: u32,
        /// Storage of the whole cluster, in GB.
        #[arg(long, default_value_t = 300)]
        storage_space: u32,
        #[arg(long, default_value = "c6.2u4g.cluster")]
        product_id: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        enable_auto_topic: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Change an instance's name, description, maintenance window, … (no task).
    Update {
        instance: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Maintenance window start, `HH:mm:ss` (with --maintain-end).
        #[arg(long, requires = "maintain_end")]
        maintain_begin: Option<String>,
        /// Maintenance window end, `HH:mm:ss` (with --maintain-begin).
        #[arg(long, requires = "maintain_begin")]
        maintain_end: Option<String>,
        #[arg(long)]
        security_group_id: Option<String>,
        /// `produce_reject` or `time_base`.
        #[arg(long)]
        retention_policy: Option<String>,
        #[arg(long)]
        enterprise_project_id: Option<String>,
    },
    /// Delete an instance (admin role); `--wait` follows its deleteInstance task.
    Delete {
        instance: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Debug, Args)]
pub struct ConfigsArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: ConfigsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigsCommand {
    /// Show every configuration item with its value, default and kind.
    Get {
        #[command(flatten)]
        inst: Inst,
    },
    /// Change items: `NAME=VALUE …`; starts a kafkaConfigModify task.
    Set {
        #[command(flatten)]
        inst: Inst,
        #[arg(required = true, value_name = "NAME=VALUE")]
        items: Vec<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct AutotopicArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub inst: Inst,
    pub state: OnOff,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["storage", "brokers", "product"]))]
pub struct ResizeArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub inst: Inst,
    /// New storage of the cluster in GB (grows only); with --brokers, the storage after adding them.
    #[arg(long, value_name = "GB")]
    pub storage: Option<u32>,
    /// New number of brokers (grows only).
    #[arg(long, value_name = "N")]
    pub brokers: Option<u32>,
    /// New flavour (product id).
    #[arg(long, value_name = "ID", conflicts_with_all = ["storage", "brokers"])]
    pub product: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct ReassignArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub inst: Inst,
    /// The topic whose partitions move.
    #[arg(long)]
    pub topic: String,
    /// The brokers to spread them over: `0,1,2`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub brokers: Vec<u32>,
    #[arg(long)]
    pub replication_factor: Option<u32>,
    /// Replication throttle in bytes/s.
    #[arg(long)]
    pub throttle: Option<i64>,
    /// Run at TIME instead of now: RFC 3339 (`2026-12-01T02:00:00Z`), local `YYYY-MM-DD HH:MM[:SS]`,
    /// or from now (`+30m`, `+2h`, `+1d`).
    #[arg(long, value_name = "TIME", conflicts_with = "wait", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Only print how long it would take (seconds); creates no task.
    #[arg(long, conflicts_with_all = ["at", "wait"])]
    pub estimate: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub inst: Inst,
    /// Run at TIME instead of now (see `reassign --at`).
    #[arg(long, value_name = "TIME", conflicts_with = "wait", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Only show the current and the newest kernel build.
    #[arg(long, conflicts_with_all = ["at", "wait"])]
    pub check: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub inst: Inst,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Lets a closed pipe end the process quietly, as it does `cat` (`kafka-tasks tasks list | head`):
/// Rust ignores SIGPIPE, and the next `println!` would then panic on the broken pipe.
#[allow(unsafe_code, reason = "signal(2), see the SAFETY note")]
pub fn default_sigpipe() {
    // SAFETY: called before the client starts any thread of its own; SIG_DFL is a valid
    // disposition and no Rust state depends on SIGPIPE being ignored in a client process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs a client command; prints the failure (never a backtrace) and returns its exit code.
pub async fn run(cmd: ClientCommand) -> ExitCode {
    run_with(dispatch(cmd)).await
}

/// Runs a client action as [`run`] does a command.
pub async fn run_with(action: impl Future<Output = Result<(), Failure>>) -> ExitCode {
    match action.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // Its message may quote the server (an error's code and message, a step's name).
            eprintln!("error: {}", output::escape(&f.to_string()));
            if let Failure::Api { hint: Some(h), .. } = &f {
                eprintln!("hint: {}", output::escape(h));
            }
            ExitCode::from(f.exit_code())
        }
    }
}

/// What one command prints and does; `out` is how to print.
struct Ctx {
    api: Api,
    output: Output,
    colour: bool,
}

impl Ctx {
    fn new(conn: &Conn) -> Result<Ctx, Failure> {
        Ok(Ctx { api: Api::from_conn(conn)?, output: conn.output, colour: colour_stdout() })
    }

    fn json(&self) -> bool {
        self.output == Output::Json
    }

    /// The API's JSON as it came (pretty), for `--output json`.
    fn print_json(&self, v: &Value) {
        if !v.is_null() {
            println!("{}", output::json_text(v));
        }
    }

    /// The API's answer: with `-o json` as it came, else what `render` makes of it for people.
    /// `render` reads the answer with every string escaped ([`output::for_people`]), so that
    /// nothing the server sent acts on the terminal, whichever of it `render` prints.
    fn show(&self, v: &Value, render: impl FnOnce(&Value) -> String) {
        if self.json() { self.print_json(v) } else { println!("{}", render(&output::for_people(v))) }
    }

    /// As [`Ctx::show`], with the answer (every string escaped) read into its wire type `T`,
    /// the one the server writes it from; an answer of another shape is shown as its JSON.
    fn show_as<T: serde::de::DeserializeOwned>(&self, v: &Value, render: impl FnOnce(&T) -> String) {
        self.show(v, |safe| match T::deserialize(safe) {
            Ok(answer) => render(&answer),
            Err(_) => output::json_text(safe),
        })
    }

    /// A sentence for people (nothing with `-o json`), escaped whole: it may name an id the
    /// server sent.
    fn say(&self, line: &str) {
        if !self.json() {
            println!("{}", output::escape(line));
        }
    }

    async fn wait_for(
        &self,
        instance: &str,
        task: &str,
        w: &WaitArgs,
        gone_is_success: bool,
    ) -> Result<Value, Failure> {
        let timeout = (w.timeout > 0).then(|| Duration::from_secs(w.timeout));
        wait::wait(wait::Waiting { api: &self.api, instance, task, timeout, gone_is_success }).await
    }

    /// Follows the operation's task when `--wait`, then says how it ended.
    async fn follow(&self, instance: &str, job: Option<&str>, w: &WaitArgs) -> Result<(), Failure> {
        let (true, Some(job)) = (w.wait, job) else { return Ok(()) };
        let started = std::time::Instant::now();
        self.wait_for(instance, job, w, false).await?;
        self.say(&format!("task {job} SUCCESS after {}", output::duration(started.elapsed().as_secs())));
        Ok(())
    }

    /// The newest task named `name` of the instance (for calls whose answer names no task).
    async fn newest_task(&self, instance: &str, name: &str) -> Result<String, Failure> {
        let path = self.api.instance_path(instance, "/tasks");
        let list: TaskList = self.api.get_as(&path, &[("limit", "100".into())]).await?;
        list.tasks
            .into_iter()
            .filter(|t| t.name == name)
            .max_by_key(|t| output::parse_api_time(&t.created_at).unwrap_or(0))
            .map(|t| t.id.into_owned())
            .ok_or_else(|| Failure::Network(format!("no {name} task found on instance {instance}")))
    }
}

async fn dispatch(cmd: ClientCommand) -> Result<(), Failure> {
    match cmd {
        ClientCommand::Configure(a) => configure::configure(a).await,
        ClientCommand::Tasks(a) => tasks(Ctx::new(&a.conn)?, a.cmd).await,
        ClientCommand::Scheduled(a) => scheduled(Ctx::new(&a.conn)?, a.cmd).await,
        ClientCommand::Instances(a) => instances(Ctx::new(&a.conn)?, a.cmd).await,
        ClientCommand::Configs(a) => configs(Ctx::new(&a.conn)?, a.cmd).await,
        ClientCommand::Autotopic(a) => {
            let c = Ctx::new(&a.conn)?;
            let body = json!({ "enable_auto_topic": matches!(a.state, OnOff::On) });
            let path = c.api.instance_path(&a.inst.instance, "/autotopic");
            let v = c.api.send("POST", &path, &[], Some(&body)).await?;
            c.show_as(&v, |a: &AutoTopicChanged| format!("task {} started", a.job_id));
            c.follow(&a.inst.instance, job_of(&v).as_deref(), &a.wait).await
        }
        ClientCommand::Resize(a) => {
            let c = Ctx::new(&a.conn)?;
            let body = match (a.storage, a.brokers, &a.product) {
                (_, _, Some(p)) => json!({ "oper_type": "vertical", "new_product_id": p }),
                (s, Some(b), None) => json!({ "oper_type": "horizontal", "new_broker_num": b, "new_storage_space": s }),
                (Some(s), None, None) => json!({ "oper_type": "storage", "new_storage_space": s }),
                (None, None, None) => return Err(Failure::Usage("give --storage, --brokers or --product".into())),
            };
            let path = format!("/v2/{}/kafka/instances/{}/extend", c.api.project, a.inst.instance);
            let v = c.api.send("POST", &path, &[], Some(&body)).await?;
            c.show_as(&v, |j: &JobId| format!("task {} started", j.job_id));
            c.follow(&a.inst.instance, job_of(&v).as_deref(), &a.wait).await
        }
        ClientCommand::Reassign(a) => {
            let c = Ctx::new(&a.conn)?;
            let mut r = json!({ "topic": a.topic, "brokers": a.brokers });
            if let Some(rf) = a.replication_factor {
                r["replication_factor"] = json!(rf);
            }
            let mut body = json!({ "reassignments": [r] });
            if let Some(t) = a.throttle {
                body["throttle"] = json!(t);
            }
            if a.estimate {
                body["time_estimate"] = json!(true);
            }
            schedule(&mut body, a.at.as_deref())?;
            let path = format!("/v2/{}/kafka/instances/{}/reassign", c.api.project, a.inst.instance);
            let v = c.api.send("POST", &path, &[], Some(&body)).await?;
            operation_started(&c, &v, &a.inst.instance, &a.wait).await
        }
        ClientCommand::Upgrade(a) => {
            let c = Ctx::new(&a.conn)?;
            let path = format!("/v2/{}/kafka/instances/{}/upgrade", c.api.project, a.inst.instance);
            if a.check {
                let v = c.api.get(&path, &[]).await?;
                c.show_as(&v, |u: &UpgradeVersions| {
                    let mut out =
                        fields(&[("current", u.current_version.clone()), ("latest", u.latest_version.clone())]);
                    out.pop();
                    out
                });
                return Ok(());
            }
            let mut body = json!({});
            schedule(&mut body, a.at.as_deref())?;
            let v = c.api.send("POST", &path, &[], Some(&body)).await?;
            operation_started(&c, &v, &a.inst.instance, &a.wait).await
        }
        ClientCommand::Retention(a) => retention(Ctx::new(&a.conn)?, a.cmd).await,
        ClientCommand::Cluster(a) => cluster(Ctx::new(&a.conn)?, a.cmd).await,
        ClientCommand::Control(a) => control::control(Ctx::new(&a.conn)?, a.cmd).await,
        ClientCommand::Restart(a) => {
            let c = Ctx::new(&a.conn)?;
            let body = json!({ "action": "restart", "instances": [a.inst.instance] });
            let path = format!("/v2/{}/instances/action", c.api.project);
            let v = c.api.send("POST", &path, &[], Some(&body)).await?;
            let ok = BatchResults::deserialize(&v)
                .is_ok_and(|b| b.results.first().is_some_and(|r| r.result == Outcome::Success));
            if !ok {
                if c.json() {
                    c.print_json(&v);
                }
                // The batch answers 200 with a per-instance result and no error code.
                return Err(Failure::Api {
                    hint: None,
                    status: 400,
                    code: "BatchRestartOrDeleteInstances".into(),
                    message: format!("the instance {} could not be restarted now", a.inst.instance),
                    request_id: None,
                });
            }
            c.show(&v, |_| format!("restart of {} started", a.inst.instance));
            if a.wait.wait {
                let job = c.newest_task(&a.inst.instance, "restartInstance").await?;
                c.follow(&a.inst.instance, Some(&job), &a.wait).await?;
            }
            Ok(())
        }
    }
}

async fn cluster(c: Ctx, cmd: ClusterCommand) -> Result<(), Failure> {
    let instance = cmd.instance().to_owned();
    let path = format!("/v2/{}/instances/{instance}/cluster", c.api.project);
    let v = match cmd {
        ClusterCommand::Show { .. } => c.api.get(&path, &[]).await?,
        ClusterCommand::Unbind { .. } => {
            c.api.send("DELETE", &path, &[], None).await?;
            c.say(&format!("instance {instance} unbound"));
            return Ok(());
        }
        ClusterCommand::Bind {
            inst: _,
            bootstrap_servers,
            security_protocol,
            sasl_username,
            sasl_password_env,
            sasl_password_file,
            sasl_password_stdin,
            ssl_ca_file,
            broker_control,
        } => {
            let sasl_password = if sasl_password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| Failure::Usage(format!("cannot read the password from stdin: {e}")))?;
                Some(line.trim_end_matches(['\n', '\r']).to_owned())
            } else {
                None
            };
            let mut body = serde_json::Map::new();
            body.insert("bootstrap_servers".into(), json!(bootstrap_servers));
            body.insert("security_protocol".into(), json!(security_protocol));
            for (k, v) in [
                ("sasl_username", sasl_username),
                ("sasl_password", sasl_password),
                ("sasl_password_env", sasl_password_env),
                ("sasl_password_file", sasl_password_file),
                ("ssl_ca_file", ssl_ca_file),
                ("broker_control", broker_control),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            c.api.send("PUT", &path, &[], Some(&Value::Object(body))).await?
        }
    };
    c.show_as(&v, |a: &ClusterAnswer| {
        let b = &a.binding;
        let mut rows = vec![
            ("instance", a.instance_id.clone()),
            ("bootstrap", b.bootstrap_servers.clone()),
            ("security", wire_name(&b.security_protocol)),
            ("reachable", a.reachable.to_string()),
        ];
        if let Some(cluster) = &a.cluster {
            let brokers: Vec<String> =
                cluster.brokers.iter().map(|b| format!("{}@{}:{}", b.id, b.host, b.port)).collect();
            rows.push(("cluster id", cluster.cluster_id.clone()));
            rows.push(("controller", cluster.controller_id.to_string()));
            rows.push(("brokers", brokers.join(", ")));
        }
        if let Some(e) = &a.error {
            rows.push(("error", e.clone()));
        }
        if let Some(u) = &b.sasl_username {
            rows.push(("sasl user", u.clone()));
            rows.push(("password", b.sasl_password_source.clone().unwrap_or_default()));
        }
        fields(&rows)
    });
    Ok(())
}

async fn retention(c: Ctx, cmd: RetentionCommand) -> Result<(), Failure> {
    let path = format!("/v2/{}/tasks/retention", c.api.project);
    let v = match cmd {
        RetentionCommand::Show => c.api.get(&path, &[]).await?,
        RetentionCommand::Reset => c.api.send("DELETE", &path, &[], None).await?,
        RetentionCommand::Set { max_age_days, overrides, max_tasks_per_instance } => {
            let mut over = serde_json::Map::new();
            for o in &overrides {
                let (name, days) =
                    o.split_once('=').ok_or_else(|| Failure::Usage(format!("--override {o:?}: write NAME=DAYS")))?;
                let days = match days {
                    "forever" => Value::Null,
                    d => json!(d.parse::<u32>().map_err(|_| Failure::Usage(format!("--override {o:?}: bad DAYS")))?),
                };
                over.insert(name.to_owned(), days);
            }
            let body = json!({
                "max_age_days": max_age_days, "overrides": over, "max_tasks_per_instance": max_tasks_per_instance,
            });
            c.api.send("PUT", &path, &[], Some(&body)).await?
        }
    };
    c.show_as(&v, |a: &RetentionAnswer| {
        let p = &a.policy;
        let days = |d: Option<u32>| d.map_or_else(|| "forever".to_owned(), |d| format!("{d} days"));
        let mut rows = vec![
            ("source", wire_name(&a.source)),
            ("max age", days(p.max_age_days)),
            ("per instance", p.max_tasks_per_instance.map_or_else(|| "no cap".to_owned(), |n| n.to_string())),
        ];
        for (name, d) in &p.overrides {
            rows.push(("override", format!("{name}: {}", days(*d))));
        }
        let mut out = fields(&rows);
        out.pop();
        out
    });
    Ok(())
}

/// `{"job_id"}` (follows it with `--wait`), `{"schedule_id"}` or `{"reassignment_time"}`.
async fn operation_started(c: &Ctx, v: &Value, instance: &str, w: &WaitArgs) -> Result<(), Failure> {
    let see = format!("see `kafka-tasks scheduled list -i {instance}`");
    c.show_as(v, |o: &ReassignOutcome| match o {
        ReassignOutcome::Estimate(e) => format!("estimated time: {}", output::duration(e.reassignment_time)),
        ReassignOutcome::Schedule(s) => format!("task {} scheduled; {see}", s.schedule_id),
        ReassignOutcome::Job(j) => format!("task {} started", j.job_id),
    });
    c.follow(instance, job_of(v).as_deref(), w).await
}

/// The task an operation started (`{"job_id"}`, as the server sent it: it goes into a path,
/// where it is encoded).
fn job_of(v: &Value) -> Option<String> {
    JobId::deserialize(v).ok().map(|j| j.job_id)
}

/// A value's wire name (an enum's, as the server spells it).
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Adds `is_schedule` + `execute_at` (epoch ms) for `--at`.
fn schedule(body: &mut Value, at: Option<&str>) -> Result<(), Failure> {
    if let Some(at) = at {
        body["is_schedule"] = json!(true);
        body["execute_at"] = json!(parse_time(at, now_ms())?);
    }
    Ok(())
}

/// Bulk deletes of at most this many records go ahead without a terminal and without `--yes`.
pub const UNCONFIRMED_BULK_MAX: u64 = 10;

/// Asks on the terminal before a bulk delete of `matched` records; without a terminal (a
/// script, a pipe), allows at most [`UNCONFIRMED_BULK_MAX`] and never waits for an answer.
fn confirm_bulk_delete(matched: u64, instance: &str, before: &str) -> Result<(), Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        if matched > UNCONFIRMED_BULK_MAX {
            return Err(Failure::Usage(format!(
                "{matched} finished tasks match; without a terminal to confirm on, deleting more than \
                 {UNCONFIRMED_BULK_MAX} needs --yes (see what would go with --dry-run); nothing was deleted"
            )));
        }
        return Ok(());
    }
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "Delete {matched} finished task(s) of instance {} created before {}? [y/N] ",
        output::escape(instance),
        output::escape(before)
    );
    let _ = err.flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|e| Failure::Usage(format!("no answer read: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::Usage("not confirmed; nothing was deleted".into())),
    }
}

/// Epoch ms of a time given on the command line: RFC 3339, local `YYYY-MM-DD HH:MM[:SS]`,
/// `now`, `+N{s,m,h,d,w}` from now, `-N{…}` before now, or epoch milliseconds. An unsigned
/// `N{…}` is refused here (`--at 2h`: ahead or ago?); filters read it as an age
/// ([`parse_range_time`]).
pub fn parse_time(s: &str, now: i64) -> Result<i64, Failure> {
    parse_time_as(s, now, false)
}

/// A time that bounds a range of records (`--since`, `--until`, `--before`): as
/// [`parse_time`], and an unsigned offset is an age, in the past: `--before 30d` is "created
/// more than 30 days ago", as a person means it.
pub fn parse_range_time(s: &str, now: i64) -> Result<i64, Failure> {
    parse_time_as(s, now, true)
}

/// `30d`, `2h`: digits, then letters, nothing else (a date also starts with a digit).
fn is_unsigned_offset(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && digits < s.len() && s.bytes().skip(digits).all(|b| b.is_ascii_alphabetic())
}

fn parse_time_as(s: &str, now: i64, unsigned_is_past: bool) -> Result<i64, Failure> {
    use chrono::{Local, NaiveDateTime, TimeZone};
    let s = s.trim();
    let forms = if unsigned_is_past {
        "RFC 3339 (2026-12-01T02:00:00Z), local YYYY-MM-DD HH:MM[:SS], now, an age (30d, -30d, 2h) or ahead (+1h)"
    } else {
        "RFC 3339 (2026-12-01T02:00:00Z), local YYYY-MM-DD HH:MM[:SS], now, ahead (+30m, +2h, +1d) or ago (-1d)"
    };
    let bad = || Failure::Usage(format!("{s:?} is not a time: use {forms}"));
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    let (sign, rel) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        Some(b'0'..=b'9') if is_unsigned_offset(s) => {
            if !unsigned_is_past {
                return Err(Failure::Usage(format!("{s:?}: write +{s} for {s} from now (or -{s} for {s} ago)")));
            }
            (-1, s)
        }
        _ => (0, s),
    };
    if sign != 0 {
        let (num, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num.parse().map_err(|_| bad())?;
        let ms = match unit {
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        return n.checked_mul(ms * sign).and_then(|d| now.checked_add(d)).ok_or_else(bad);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Local.from_local_datetime(&t).earliest().map(|t| t.timestamp_millis()).ok_or_else(bad);
        }
    }
    if s.len() >= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    Err(bad())
}

/// A list's count: a string on the wire for tasks (`task_count`), a number for jobs.
fn count_of(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(n) => n.as_u64().unwrap_or(0),
        None => 0,
    }
}

/// `10 of 14 tasks; more with --page 2 or --all` (the next page only when there is one).
fn list_footer(shown: usize, total: u64, page: &Page, what: &str) -> String {
    let shown_u = shown as u64;
    let limit = page.limit.unwrap_or(10).max(1);
    let before = match (page.page, page.offset) {
        (Some(n), _) => (n - 1) * limit,
        (None, Some(o)) => o.saturating_sub(1),
        (None, None) => 0,
    };
    if page.all || before + shown_u >= total {
        return format!("{shown} of {total} {what}");
    }
    let next = before / limit + 2;
    format!("{shown} of {total} {what}; more with --page {next} or --all")
}

/// A list as one answer: the page asked for, or with `--all` every page (100 at a time) merged
/// under `key` with the count of the last read.
async fn fetch_list(c: &Ctx, path: &str, page: &Page, key: &str, count_key: &str) -> Result<Value, Failure> {
    if !page.all {
        return c.api.get(path, &page_query(page)?).await;
    }
    let mut q = page_query(page)?;
    q.push(("limit", "100".into()));
    let mut items: Vec<Value> = Vec::new();
    loop {
        let mut this = q.clone();
        this.push(("offset", (items.len() + 1).to_string()));
        let mut v = c.api.get(path, &this).await?;
        let got = match v.get_mut(key).map(Value::take) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let total = count_of(&v, count_key);
        let empty = got.is_empty();
        items.extend(got);
        if empty || items.len() as u64 >= total {
            v[key] = Value::Array(items);
            return Ok(v);
        }
    }
}

fn page_query(p: &Page) -> Result<Vec<(&'static str, String)>, Failure> {
    let mut q = vec![];
    if let Some(l) = p.limit {
        q.push(("limit", l.to_string()));
    }
    if let Some(o) = p.offset {
        q.push(("offset", o.to_string()));
    }
    if let Some(n) = p.page {
        let limit = p.limit.unwrap_or(10);
        q.push(("offset", ((n - 1).saturating_mul(limit).saturating_add(1)).to_string()));
    }
    let now = now_ms();
    if let Some(s) = &p.since {
        q.push(("begin_time", CompactTime(parse_range_time(s, now)?).to_string()));
    }
    if let Some(s) = &p.until {
        q.push(("end_time", CompactTime(parse_range_time(s, now)?).to_string()));
    }
    Ok(q)
}

fn task_rows(tasks: &[TaskJson], scheduled: bool) -> Vec<Vec<Cell>> {
    let now = now_ms();
    tasks
        .iter()
        .map(|t| {
            let mut row = vec![Cell::from(&*t.id), Cell::from(&*t.name), status(&t.status)];
            if scheduled {
                row.push(Cell::from(t.schedule_at.as_deref().map(|s| when_text(s, now)).unwrap_or_default()));
            }
            row.push(Cell::from(when_text(&t.created_at, now)));
            row.push(Cell::from(&*t.user_name));
            row
        })
        .collect()
}

async fn tasks(c: Ctx, cmd: TasksCommand) -> Result<(), Failure> {
    let now = now_ms();
    match cmd {
        TasksCommand::List { inst, page } => {
            let path = c.api.instance_path(&inst.instance, "/tasks");
            let v = fetch_list(&c, &path, &page, "tasks", "task_count").await?;
            c.show_as(&v, |list: &TaskList| {
                let rows = task_rows(&list.tasks, false);
                let mut out = table(&["ID", "NAME", "STATUS", "CREATED", "USER"], rows, c.colour);
                let total = list.task_count.parse().unwrap_or(0);
                out.push_str(&list_footer(list.tasks.len(), total, &page, "tasks"));
                out
            });
        }
        TasksCommand::Show { inst, task } => {
            let path = c.api.instance_path(&inst.instance, &format!("/tasks/{task}"));
            let v = c.api.get(&path, &[]).await?;
            // A failed task's reason is not in the DMS record: it comes from the task's run.
            let failed = TaskList::deserialize(&v).is_ok_and(|l| l.tasks.first().is_some_and(|t| t.status == "FAILED"));
            let why = if failed && !c.json() { wait::why_failed(&c.api, &inst.instance, &task).await } else { None };
            c.show_as(&v, |list: &TaskList| {
                let Some(t) = list.tasks.first() else { return format!("no task {}", output::escape(&task)) };
                let mut rows = vec![
                    ("id", t.id.to_string()),
                    ("name", t.name.to_string()),
                    ("status", output::paint_status(&t.status, c.colour)),
                    ("user", format!("{} ({})", t.user_name, t.user_id)),
                    ("created", when_text(&t.created_at, now)),
                    ("updated", when_text(&t.updated_at, now)),
                    ("params", t.params.to_string()),
                ];
                if let Some(why) = &why {
                    if let Some(step) = &why.step {
                        rows.push(("failed at", format!("step {}", output::escape(step))));
                    }
                    rows.push(("reason", output::escape(&why.reason).into_owned()));
                    if let Some(remedy) = &why.remedy {
                        rows.push(("what to do", output::escape(remedy).into_owned()));
                    }
                }
                let mut out = fields(&rows);
                out.pop();
                out
            });
        }
        TasksCommand::Progress { inst, task } => {
            let path = c.api.instance_path(&inst.instance, &format!("/tasks/{task}/progress"));
            let v = c.api.get(&path, &[]).await?;
            c.show_as(&v, |p: &TaskProgress| {
                let at = |ms: Option<i64>| ms.map(|ms| when(ms, now)).unwrap_or_default();
                let rows = p
                    .step_list
                    .iter()
                    .map(|s| {
                        let state = serde_json::to_value(s.statue).ok();
                        let state = state.as_ref().and_then(Value::as_str).unwrap_or_default();
                        vec![Cell::from(s.name.as_str()), status(state), at(s.start_time).into(), at(s.end_time).into()]
                    })
                    .collect();
                let mut out = table(&["STEP", "STATUS", "STARTED", "ENDED"], rows, c.colour);
                out.push_str(&format!("{}% done, {} left", p.progress_percentage, output::duration(p.remain_time)));
                out
            });
        }
        TasksCommand::Delete { inst, task: Some(task), .. } => {
            let path = c.api.instance_path(&inst.instance, &format!("/tasks/{task}"));
            let v = c.api.send("DELETE", &path, &[], None).await?;
            c.show(&v, |_| format!("deleted task {task}"));
        }
        TasksCommand::Delete { inst, task: None, before, since, status, name, dry_run, yes } => {
            let now = now_ms();
            let before = before.ok_or_else(|| Failure::Usage("give a TASK or --before TIME".into()))?;
            let before_ms = parse_range_time(&before, now)?;
            let mut q = vec![("end_time", CompactTime(before_ms).to_string())];
            if let Some(s) = since {
                q.push(("begin_time", CompactTime(parse_range_time(&s, now)?).to_string()));
            }
            if !status.is_empty() {
                q.push(("status", status.join(",").to_uppercase()));
            }
            if let Some(n) = name {
                q.push(("name", n));
            }
            let path = c.api.instance_path(&inst.instance, "/tasks");
            // The count comes from the server's dry run: the same filter, the same selection.
            let mut preview_q = q.clone();
            preview_q.push(("dry_run", "true".into()));
            let preview = c.api.send("DELETE", &path, &preview_q, None).await?;
            // Read into its type, not field by field: an answer without a count must not pass
            // for "none match" and skip the question below.
            let matched = answer_as::<BulkDeletePreview>(&preview, &format!("DELETE {path}"))?.matched;
            let created_before = when(before_ms, now);
            if dry_run {
                c.show_as(&preview, |p: &BulkDeletePreview| {
                    let list = &p.tasks;
                    let mut out = table(&["ID", "NAME", "STATUS", "CREATED", "USER"], task_rows(list, false), c.colour);
                    if (list.len() as u64) < matched {
                        out.push_str(&format!("(the oldest {} shown)\n", list.len()));
                    }
                    out.push_str(&format!(
                        "{matched} finished task(s) created before {created_before} would be deleted; nothing was deleted"
                    ));
                    out
                });
                return Ok(());
            }
            if matched > 0 && !yes {
                confirm_bulk_delete(matched, &inst.instance, &created_before)?;
            }
            let mut total = 0u64;
            // Each request removes at most 1000 and says whether more match; each removes at
            // least one while more remain, so this ends.
            loop {
                let v = c.api.send("DELETE", &path, &q, None).await?;
                let BulkDeleteAnswer { deleted, more } = answer_as(&v, &format!("DELETE {path}"))?;
                total += deleted as u64;
                if c.json() {
                    c.print_json(&v);
                }
                if deleted == 0 || !more {
                    break;
                }
            }
            c.say(&format!("deleted {total} finished task(s)"));
        }
        TasksCommand::Events { inst, after, until_idle, count } => {
            follow::follow(follow::Following {
                api: &c.api,
                instance: &inst.instance,
                after,
                until_idle: until_idle.map(Duration::from_secs),
                count,
                json: c.json(),
                colour: c.colour,
            })
            .await?;
        }
        TasksCommand::Wait { inst, task, timeout } => {
            let w = WaitArgs { wait: true, timeout };
            let started = std::time::Instant::now();
            let t = c.wait_for(&inst.instance, &task, &w, false).await?;
            c.show(&json!({ "task_count": "1", "tasks": [t] }), |_| {
                format!("task {task} SUCCESS after {}", output::duration(started.elapsed().as_secs()))
            });
        }
    }
    Ok(())
}

async fn scheduled(c: Ctx, cmd: ScheduledCommand) -> Result<(), Failure> {
    let task_path = |inst: &Inst, task: &str| c.api.instance_path(&inst.instance, &format!("/scheduled-tasks/{task}"));
    match cmd {
        ScheduledCommand::List { inst, page } => {
            let path = c.api.instance_path(&inst.instance, "/scheduled-tasks");
            let v = fetch_list(&c, &path, &page, "jobs", "job_count").await?;
            c.show_as(&v, |list: &JobList| {
                let rows = task_rows(&list.jobs, true);
                let mut out = table(&["ID", "NAME", "STATUS", "SCHEDULED FOR", "CREATED", "USER"], rows, c.colour);
                out.push_str(&list_footer(list.jobs.len(), list.job_count, &page, "scheduled tasks"));
                out
            });
        }
        ScheduledCommand::Reschedule { inst, task, at } => {
            let ms = parse_time(&at, now_ms())?;
            if ms <= now_ms() {
                return Err(Failure::Usage(format!(
                    "--at {}: that is not ahead ({}); a task is moved to a time to come, e.g. `--at +1h`",
                    output::escape(&at),
                    when(ms, now_ms())
                )));
            }
            let v = c
                .api
                .send("PUT", &task_path(&inst, &task), &[("execute_at", CompactTime(ms).to_string())], None)
                .await?;
            c.show(&v, |_| format!("task {task} now due {}", when(ms, now_ms())));
        }
        ScheduledCommand::Resume { inst, task } => {
            let v = c.api.send("PUT", &task_path(&inst, &task), &[("status", "null".into())], None).await?;
            c.show(&v, |_| format!("task {task} waits again"));
        }
        ScheduledCommand::Cancel { inst, task } => {
            let v = c.api.send("PUT", &task_path(&inst, &task), &[("status", "CANCELLED".into())], None).await?;
            c.show(&v, |_| format!("cancelled task {task}"));
        }
        ScheduledCommand::Delete { inst, task } => {
            let v = c.api.send("DELETE", &task_path(&inst, &task), &[], None).await?;
            c.show(&v, |_| format!("deleted scheduled task {task}"));
        }
    }
    Ok(())
}

async fn instances(c: Ctx, cmd: InstancesCommand) -> Result<(), Failure> {
    let now = now_ms();
    match cmd {
        InstancesCommand::List => {
            let v = c.api.get(&format!("/v2/{}/instances", c.api.project), &[]).await?;
            c.show_as(&v, |all: &InstanceList| {
                let list = &all.instances;
                let rows = list
                    .iter()
                    .map(|i| {
                        vec![
                            Cell::from(i.instance_id.as_str()),
                            Cell::from(i.name.as_str()),
                            status(i.status.as_str()),
                            Cell::from(i.engine_version.as_str()),
                            Cell::from(i.storage_space.to_string()),
                            Cell::from(when_text(&i.created_at, now)),
                        ]
                    })
                    .collect();
                let mut out = table(&["ID", "NAME", "STATUS", "VERSION", "STORAGE GB", "CREATED"], rows, c.colour);
                out.push_str(&format!("{} instance{}", list.len(), if list.len() == 1 { "" } else { "s" }));
                out
            });
        }
        InstancesCommand::Show { instance, id } => {
            let instance = instance.or(id).unwrap_or_default();
            let v = c.api.get(&c.api.instance_path(&instance, ""), &[]).await?;
            c.show_as(&v, |i: &InstanceJson| {
                let mut pairs: Vec<(&str, String)> = vec![
                    ("instance_id", i.instance_id.clone()),
                    ("name", i.name.clone()),
                    ("status", output::paint_status(i.status.as_str(), c.colour)),
                    ("engine_version", i.engine_version.clone()),
                    ("broker_num", i.broker_num.to_string()),
                    ("storage_space", i.storage_space.to_string()),
                    ("product_id", i.product_id.clone()),
                    ("enable_auto_topic", i.enable_auto_topic.to_string()),
                    ("maintain_begin", i.maintain_begin.clone()),
                    ("maintain_end", i.maintain_end.clone()),
                ];
                if let Some(d) = &i.description {
                    pairs.push(("description", d.clone()));
                }
                pairs.push(("created_at", when_text(&i.created_at, now)));
                let mut out = fields(&pairs);
                out.pop();
                out
            });
        }
        InstancesCommand::Create {
            name,
            engine_version,
            broker_num,
            storage_space,
            product_id,
            description,
            enable_auto_topic,
            wait,
        } => {
            let mut body = json!({
                "name": name, "engine": "kafka", "engine_version": engine_version, "broker_num": broker_num,
                "storage_space": storage_space, "product_id": product_id, "enable_auto_topic": enable_auto_topic,
            });
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let path = format!("/v2/kafka/{}/instances", c.api.project);
            let v = c.api.send("POST", &path, &[], Some(&body)).await?;
            let id = answer_as::<CreatedInstance>(&v, &format!("POST {path}"))?.instance_id;
            c.show_as(&v, |a: &CreatedInstance| format!("instance {} is being created", a.instance_id));
            if wait.wait {
                let job = c.newest_task(&id, "createInstance").await?;
                c.follow(&id, Some(&job), &wait).await?;
            }
        }
        InstancesCommand::Update {
            instance,
            name,
            description,
            maintain_begin,
            maintain_end,
            security_group_id,
            retention_policy,
            enterprise_project_id,
        } => {
            let mut body = serde_json::Map::new();
            for (k, v) in [
                ("name", name),
                ("description", description),
                ("maintain_begin", maintain_begin),
                ("maintain_end", maintain_end),
                ("security_group_id", security_group_id),
                ("retention_policy", retention_policy),
                ("enterprise_project_id", enterprise_project_id),
            ] {
                if let Some(v) = v {
                    body.insert(k.to_owned(), json!(v));
                }
            }
            if body.is_empty() {
                return Err(Failure::Usage("nothing to change: give at least one of the flags (see --help)".into()));
            }
            let v = c.api.send("PUT", &c.api.instance_path(&instance, ""), &[], Some(&Value::Object(body))).await?;
            c.show(&v, |_| format!("updated instance {instance}"));
        }
        InstancesCommand::Delete { instance, wait } => {
            let v = c.api.send("DELETE", &c.api.instance_path(&instance, ""), &[], None).await?;
            c.show(&v, |_| format!("instance {instance} is being deleted"));
            if wait.wait {
                let started = std::time::Instant::now();
                match c.newest_task(&instance, "deleteInstance").await {
                    Ok(job) => {
                        c.wait_for(&instance, &job, &wait, true).await?;
                    }
                    // Already gone with its task (a fast engine): the deletion is done.
                    Err(Failure::Api { status: 404, .. }) => {}
                    Err(e) => return Err(e),
                }
                c.say(&format!("instance {instance} deleted after {}", output::duration(started.elapsed().as_secs())));
            }
        }
    }
    Ok(())
}

async fn configs(c: Ctx, cmd: ConfigsCommand) -> Result<(), Failure> {
    match cmd {
        ConfigsCommand::Get { inst } => {
            let v = c.api.get(&c.api.instance_path(&inst.instance, "/configs"), &[]).await?;
            c.show_as(&v, |list: &ConfigList| {
                let rows = list
                    .kafka_configs
                    .iter()
                    .map(|i| {
                        vec![
                            Cell::from(i.name.as_str()),
                            Cell::from(i.value.as_str()),
                            Cell::from(i.default_value.as_str()),
                            Cell::from(wire_name(&i.config_type)),
                            Cell::from(i.valid_values.as_str()),
                        ]
                    })
                    .collect();
                let mut out = table(&["NAME", "VALUE", "DEFAULT", "KIND", "VALID VALUES"], rows, c.colour);
                out.pop();
                out
            });
        }
        ConfigsCommand::Set { inst, items, wait } => {
            let mut list = vec![];
            for item in &items {
                let (name, value) =
                    item.split_once('=').ok_or_else(|| Failure::Usage(format!("{item:?}: write NAME=VALUE")))?;
                list.push(json!({ "name": name, "value": value }));
            }
            let body = json!({ "kafka_configs": list });
            let v = c.api.send("PUT", &c.api.instance_path(&inst.instance, "/configs"), &[], Some(&body)).await?;
            c.show_as(&v, |m: &ConfigsModified| {
                format!("task {} started ({} dynamic, {} static)", m.job_id, m.dynamic_config, m.static_config)
            });
            c.follow(&inst.instance, job_of(&v).as_deref(), &wait).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_every_documented_form() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("+30m", now).ok(), Some(now + 1_800_000));
        assert_eq!(parse_time("+2h", now).ok(), Some(now + 7_200_000));
        assert_eq!(parse_time("2026-12-01T02:00:00Z", now).ok(), Some(1_796_090_400_000));
        assert!(parse_time("2026-12-01 02:00", now).is_ok());
        assert!(matches!(parse_time("tomorrow", now), Err(Failure::Usage(_))));
        assert!(matches!(parse_time("+5x", now), Err(Failure::Usage(_))));
    }

    #[test]
    fn ranges_read_ages_in_the_past_and_scheduling_refuses_an_unsigned_offset() {
        let now = 1_700_000_000_000;
        let day = 86_400_000;
        assert_eq!(parse_range_time("30d", now).ok(), Some(now - 30 * day));
        assert_eq!(parse_range_time("-30d", now).ok(), Some(now - 30 * day));
        assert_eq!(parse_range_time("+1h", now).ok(), Some(now + 3_600_000));
        assert_eq!(parse_range_time("2w", now).ok(), Some(now - 14 * day));
        assert_eq!(parse_range_time("now", now).ok(), Some(now));
        assert_eq!(parse_range_time("2026-12-01T02:00:00Z", now).ok(), Some(1_796_090_400_000));
        assert_eq!(parse_time("-1d", now).ok(), Some(now - day));
        assert_eq!(parse_time("NOW", now).ok(), Some(now));
        let Err(Failure::Usage(m)) = parse_time("2h", now) else { panic!("an unsigned --at was taken") };
        assert!(m.contains("+2h"), "{m}");
        for bad in ["30", "-", "-d", "30 d", "--30d", "-30x", "+9999999999999999d"] {
            assert!(matches!(parse_range_time(bad, now), Err(Failure::Usage(_))), "{bad} was taken");
        }
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let api =
            |status| Failure::Api { status, code: String::new(), message: String::new(), request_id: None, hint: None };
        assert_eq!(api(404).exit_code(), 1);
        assert_eq!(api(503).exit_code(), 4);
        assert_eq!(Failure::Usage(String::new()).exit_code(), 2);
        assert_eq!(Failure::TaskFailed(String::new()).exit_code(), 3);
        assert_eq!(Failure::Network(String::new()).exit_code(), 4);
        assert_eq!(Failure::Timeout(String::new()).exit_code(), 5);
    }
}
