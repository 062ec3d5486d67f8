//! Service configuration: defaults, then environment variables (`KAFKA_TASKS_*`), then flags,
//! into one typed struct. clap applies the layering: a flag beats its variable, which beats
//! the default.

use std::net::SocketAddr;

use clap::Args;

/// The default database: an SQLite file in `./data/`.
pub const DEFAULT_DATABASE: &str = "sqlite:data/kafka-tasks.db";

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite:PATH`, a bare path (SQLite), or `postgres://user@host:port/db`.
    #[arg(long, env = "KAFKA_TASKS_DATABASE", default_value = DEFAULT_DATABASE)]
    pub database: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KAFKA_TASKS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub db: DatabaseArgs,

    /// Connections in the PostgreSQL pool of this process.
    #[arg(long, env = "KAFKA_TASKS_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub pool_size: u64,

    /// Multiplies every step's realistic duration; 0 completes each step as soon as a worker takes it.
    #[arg(long, env = "KAFKA_TASKS_TIME_SCALE", default_value_t = 1.0, value_parser = parse_scale)]
    pub time_scale: f64,

    /// How long a worker's lease on a task lasts without renewal (ms); a task of a process
    /// that died is taken over after this.
    #[arg(long, env = "KAFKA_TASKS_LEASE_MS", default_value_t = 15_000, value_parser = clap::value_parser!(i64).range(200..=3_600_000))]
    pub lease_ms: i64,

    /// How often idle workers look for due work (ms).
    #[arg(long, env = "KAFKA_TASKS_POLL_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_ms: u64,

    /// How often the store's task gauges of `/metrics` are sampled (ms): one indexed query over
    /// the unfinished tasks.
    #[arg(long, env = "KAFKA_TASKS_STORE_SAMPLE_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub store_sample_ms: u64,

    /// Tasks this process runs at once.
    #[arg(long, env = "KAFKA_TASKS_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_in_flight: u64,

    /// The largest storage (GB) the simulated resource pool allocates to one instance;
    /// a create or resize beyond it fails at its allocation step.
    #[arg(long, env = "KAFKA_TASKS_STORAGE_POOL_GB", default_value_t = 100_000)]
    pub storage_pool_gb: u32,

    /// The executor file (TOML): which operations run real work, and how (see
    /// docs/executors.md). Without it every operation is simulated.
    #[arg(long, env = "KAFKA_TASKS_EXECUTORS")]
    pub executors: Option<std::path::PathBuf>,

    /// Log format: `json`, `text`, or `auto` (JSON unless stderr is a terminal).
    #[arg(long, env = "KAFKA_TASKS_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,

    /// Project of the admin credential created on a database that has none.
    #[arg(long, env = "KAFKA_TASKS_DEFAULT_PROJECT_ID", default_value = "0123456789abcdef0123456789abcdef")]
    pub default_project_id: String,

    /// Test control, for testing automation against this server: fault rules, a movable clock
    /// and a state reset under `/v2/{project_id}/test-control/` (admin role). Never on a shared
    /// deployment: refused with a PostgreSQL server that is not on this machine.
    #[arg(long)]
    pub test_control: bool,

    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub auth: crate::auth::config::AuthArgs,
    #[command(flatten)]
    pub net: crate::http::serve::NetArgs,
    #[command(flatten)]
    pub events: crate::http::events::EventArgs,
    #[command(flatten)]
    pub clusters: crate::http::clusters::ClusterArgs,
}

/// The retention policy of projects that set none (`PUT /v2/{project_id}/tasks/retention`
/// replaces it for one project), and how the pruner runs. Without flags nothing is pruned.
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Remove finished tasks this many days after they ended (1-36500).
    #[arg(long, env = "KAFKA_TASKS_RETENTION_MAX_AGE_DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_max_age_days: Option<u32>,

    /// `NAME=DAYS` (or `NAME=forever`): the age for tasks named NAME instead of the default.
    /// Repeat the flag, or separate with commas in the variable.
    #[arg(long, env = "KAFKA_TASKS_RETENTION_OVERRIDES", value_delimiter = ',', value_name = "NAME=DAYS")]
    pub retention_override: Vec<String>,

    /// Keep at most this many finished tasks per instance; the oldest beyond are removed.
    #[arg(long, env = "KAFKA_TASKS_RETENTION_MAX_TASKS_PER_INSTANCE", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub retention_max_tasks_per_instance: Option<u64>,

    /// Time between pruning rounds (ms).
    #[arg(long, env = "KAFKA_TASKS_RETENTION_INTERVAL_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(50..=86_400_000))]
    pub retention_interval_ms: u64,

    /// Most records one pruning transaction removes.
    #[arg(long, env = "KAFKA_TASKS_RETENTION_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=5_000))]
    pub retention_batch: u64,

    /// Pause between two pruning batches (ms).
    #[arg(long, env = "KAFKA_TASKS_RETENTION_PAUSE_MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub retention_pause_ms: u64,
}

impl RetentionArgs {
    /// The default policy the flags describe, checked as an API body would be.
    pub fn policy(&self) -> anyhow::Result<crate::domain::retention::RetentionPolicy> {
        let mut overrides = std::collections::BTreeMap::new();
        for o in &self.retention_override {
            let (name, days) = o
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--retention-override {o:?}: write NAME=DAYS or NAME=forever"))?;
            let days = match days.trim() {
                "forever" => None,
                d => Some(d.parse::<u32>().map_err(|_| anyhow::anyhow!("--retention-override {o:?}: bad DAYS"))?),
            };
            overrides.insert(name.trim().to_owned(), days);
        }
        let policy = crate::domain::retention::RetentionPolicy {
            max_age_days: self.retention_max_age_days,
            overrides,
            max_tasks_per_instance: self.retention_max_tasks_per_instance,
        };
        policy.validate().map_err(|e| anyhow::anyhow!("retention flags: {e}"))?;
        Ok(policy)
    }

    pub fn pruner(&self) -> anyhow::Result<crate::engine::retention::PrunerConfig> {
        Ok(crate::engine::retention::PrunerConfig {
            defaults: self.policy()?,
            interval: std::time::Duration::from_millis(self.retention_interval_ms),
            batch: self.retention_batch,
            pause: std::time::Duration::from_millis(self.retention_pause_ms),
        })
    }
}

/// Where the master key comes from. It seals secret keys at rest and signs tokens; every process
/// sharing a database needs the same one.
#[derive(Clone, Args)]
pub struct KeyArgs {
    /// The master key itself, 64 hexadecimal characters (wins over the file).
    #[arg(long, env = "KAFKA_TASKS_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// The master key file; created (mode 0600) with a new key if missing.
    #[arg(long, env = "KAFKA_TASKS_MASTER_KEY_FILE", default_value = "data/master.key")]
    pub master_key_file: std::path::PathBuf,
}

impl std::fmt::Debug for KeyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyArgs")
            .field("master_key", &self.master_key.as_ref().map(|_| "***"))
            .field("master_key_file", &self.master_key_file)
            .finish()
    }
}

impl KeyArgs {
    /// The master key for the database `storage` opened, checked against it: a database whose
    /// secrets were sealed under another key is refused with a clear error (rather than sealing
    /// new secrets no other process can open), and a missing key file is created only for a
    /// database that holds no credential yet. The first key used records its check value.
    pub async fn open(
        &self,
        storage: &crate::storage::Storage,
        now: crate::domain::Timestamp,
    ) -> anyhow::Result<crate::auth::keys::MasterKey> {
        use crate::auth::keys::MasterKey;
        const HOW: &str = "pass the key it was made with: --master-key (KAFKA_TASKS_MASTER_KEY) or \
                           --master-key-file (KAFKA_TASKS_MASTER_KEY_FILE)";
        let store = storage.credentials.as_ref();
        let recorded = store.master_key_check().await?;
        let key = match &self.master_key {
            Some(hex) => MasterKey::from_hex(hex)?,
            None => match MasterKey::load(&self.master_key_file)? {
                Some(key) => key,
                None if recorded.is_some() || store.has_credentials().await? => anyhow::bail!(
                    "the master key file {} does not exist, and the database already holds credentials sealed with \
                     a master key; {HOW}",
                    self.master_key_file.display()
                ),
                None => MasterKey::create(&self.master_key_file)?,
            },
        };
        let check = key.check_value();
        let wrong = || {
            anyhow::anyhow!(
                "the database's credentials are sealed with another master key than the one given ({}); {HOW}",
                match &self.master_key {
                    Some(_) => "--master-key".to_owned(),
                    None => format!("file {}", self.master_key_file.display()),
                }
            )
        };
        match recorded {
            Some(r) if r == check => {}
            Some(_) => return Err(wrong()),
            None => {
                // A database from before check values: any stored secret tells whether the key fits.
                if let Some(c) = store.list_credentials().await?.first()
                    && key.open(&c.secret_sealed).is_err()
                {
                    return Err(wrong());
                }
                if store.record_master_key_check(&check, now).await? != check {
                    return Err(wrong());
                }
            }
        }
        Ok(key)
    }
}

fn parse_scale(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && (0.0..=1000.0).contains(&v) {
        Ok(v)
    } else {
        Err("the time scale must be between 0 and 1000".into())
    }
}
