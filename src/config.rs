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

    /// Tasks this process runs at once.
    #[arg(long, env = "KAFKA_TASKS_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_in_flight: u64,

    /// The largest storage (GB) the simulated resource pool allocates to one instance;
    /// a create or resize beyond it fails at its allocation step.
    #[arg(long, env = "KAFKA_TASKS_STORAGE_POOL_GB", default_value_t = 100_000)]
    pub storage_pool_gb: u32,

    /// Log format: `json`, `text`, or `auto` (JSON unless stderr is a terminal).
    #[arg(long, env = "KAFKA_TASKS_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,

    /// Project of the admin credential created on a database that has none.
    #[arg(long, env = "KAFKA_TASKS_DEFAULT_PROJECT_ID", default_value = "0123456789abcdef0123456789abcdef")]
    pub default_project_id: String,

    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub net: crate::http::serve::NetArgs,
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
    pub fn load(&self) -> anyhow::Result<crate::auth::keys::MasterKey> {
        use crate::auth::keys::MasterKey;
        Ok(match &self.master_key {
            Some(hex) => MasterKey::from_hex(hex)?,
            None => MasterKey::load_or_create(&self.master_key_file)?,
        })
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
