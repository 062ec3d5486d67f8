//! Connected mode's side of the wire to a real Apache Kafka cluster: connecting as a binding
//! says ([`crate::domain::cluster`]), and what the operations read from and do to the cluster.
//! Every call is bounded by a deadline; every failure says what was tried and what answered.

use std::time::Duration;

use crate::auth::keys::MasterKey;
use crate::domain::cluster::{ClusterPolicy, PasswordSource, SecurityProtocol};
use crate::storage::StoredBinding;

/// Why the cluster could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The binding's password could not be read (an unset variable, an unreadable or too open
    /// file, a sealed password the master key does not open).
    #[error("the cluster's password: {0}")]
    Password(String),
    /// The binding cannot be used as given (a CA file that cannot be read, …).
    #[error("{0}")]
    Config(String),
    /// Nothing answered, or the cluster refused us.
    #[error("cannot use the cluster at {servers}: {why}")]
    Unreachable { servers: String, why: String },
}

/// The cluster as DescribeCluster shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: Vec<BrokerView>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct BrokerView {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub fenced: bool,
}

/// The SASL password of a binding, from where it says it is.
pub fn password(
    stored: &StoredBinding,
    master: &MasterKey,
    policy: &ClusterPolicy,
) -> Result<Option<String>, ClusterError> {
    let Some(sasl) = &stored.binding.sasl else { return Ok(None) };
    let secret = match &sasl.password {
        PasswordSource::Sealed => {
            let sealed = stored
                .password_sealed
                .as_deref()
                .ok_or_else(|| ClusterError::Password("no sealed password is stored".into()))?;
            master.open(sealed).map_err(|_| ClusterError::Password("the master key does not open it".into()))?
        }
        PasswordSource::Env(name) => std::env::var(name)
            .map_err(|_| ClusterError::Password(format!("the environment variable {name} is not set")))?,
        PasswordSource::File(path) => {
            policy.check_file(path).map_err(ClusterError::Password)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let meta =
                    std::fs::metadata(path).map_err(|e| ClusterError::Password(format!("{}: {e}", path.display())))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(ClusterError::Password(format!(
                        "{} is readable by others: chmod 600 it",
                        path.display()
                    )));
                }
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| ClusterError::Password(format!("{}: {e}", path.display())))?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    Ok(Some(secret))
}

/// Connects to the cluster of a binding, failing within `timeout` when nothing answers.
pub async fn connect(
    stored: &StoredBinding,
    master: &MasterKey,
    policy: &ClusterPolicy,
    timeout: Duration,
) -> Result<krafka::Kafka, ClusterError> {
    let b = &stored.binding;
    let servers = b.bootstrap.join(",");
    let mut builder = krafka::Kafka::builder(servers.clone())
        .client_id("kafka-tasks")
        .connect_timeout(timeout)
        .request_timeout(timeout);
    // What the operator allows is checked at every use, not only when binding: the flags may
    // have changed since, and a file may have been swapped for a link.
    policy.permits(b).map_err(ClusterError::Config)?;
    let password = password(stored, master, policy)?;
    let tls = b.protocol.tls().then(|| {
        let tls = krafka::auth::TlsConfig::new();
        match &b.ssl_ca_file {
            Some(ca) => tls.with_ca_cert(ca.display().to_string()),
            None => tls,
        }
    });
    let security = match (b.protocol, &b.sasl, password) {
        (SecurityProtocol::PLAINTEXT, _, _) => None,
        (SecurityProtocol::SSL, _, _) => tls.map(krafka::auth::AuthConfig::ssl),
        (_, Some(sasl), Some(password)) => {
            let auth = krafka::auth::AuthConfig::sasl_scram_sha512(sasl.username.clone(), password);
            Some(match tls {
                Some(tls) => auth.with_tls(tls),
                None => auth,
            })
        }
        _ => return Err(ClusterError::Config("a SASL protocol needs a user name and a password".into())),
    };
    if let Some(security) = security {
        builder = builder.security(security);
    }
    let unreachable =
        |e: krafka::KrafkaError| ClusterError::Unreachable { servers: servers.clone(), why: e.to_string() };
    match tokio::time::timeout(timeout, builder.connect()).await {
        Ok(Ok(kafka)) => Ok(kafka),
        Ok(Err(e)) => Err(unreachable(e)),
        Err(_) => Err(ClusterError::Unreachable { servers, why: format!("no answer within {} s", timeout.as_secs()) }),
    }
}

/// DescribeCluster: the cluster's id, controller and brokers.
pub async fn describe(kafka: &krafka::Kafka, timeout: Duration) -> Result<ClusterView, ClusterError> {
    let admin = kafka.admin();
    let options = krafka::admin::DescribeClusterOptions::default().timeout(timeout);
    let d = match tokio::time::timeout(timeout, admin.describe_cluster(options)).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Err(ClusterError::Unreachable { servers: String::new(), why: e.to_string() }),
        Err(_) => {
            return Err(ClusterError::Unreachable {
                servers: String::new(),
                why: format!("DescribeCluster got no answer within {} s", timeout.as_secs()),
            });
        }
    };
    let mut brokers: Vec<BrokerView> = d
        .brokers
        .into_iter()
        .map(|b| BrokerView { id: b.id, host: b.host, port: b.port, fenced: b.is_fenced })
        .collect();
    brokers.sort_by_key(|b| b.id);
    Ok(ClusterView { cluster_id: d.cluster_id, controller_id: d.controller_id, brokers })
}

/// What ShowInstance says of a bound instance's cluster: a wire type, since ShowInstance's
/// answer carries it as it is.
pub use crate::wire::instance::ClusterHealth;

/// The most entries a [`HealthCache`] keeps: bindings are an admin's, but a bound instance is
/// a row any tenant admin can make, so the cache is bounded all the same.
const HEALTH_ENTRIES: usize = 1024;

/// A short-lived cache of [`ClusterHealth`] by instance and binding, so that ShowInstance of a
/// bound instance costs a round trip to the cluster at most once per `ttl`, and never waits longer
/// than `bound` for one that does not answer (the failure is cached too).
#[derive(Debug)]
pub struct HealthCache {
    pub ttl: Duration,
    pub bound: Duration,
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, ClusterHealth)>>,
}

impl Default for HealthCache {
    fn default() -> Self {
        HealthCache { ttl: Duration::from_secs(5), bound: Duration::from_secs(2), entries: Default::default() }
    }
}

impl HealthCache {
    /// The cluster's health as seen at most `ttl` ago, asking it (within `bound`) when older.
    pub async fn get(
        &self,
        instance: &str,
        stored: &StoredBinding,
        master: &MasterKey,
        policy: &ClusterPolicy,
        now_ms: i64,
    ) -> ClusterHealth {
        let key = format!("{instance}\n{}", serde_json::to_string(&stored.binding.view()).unwrap_or_default());
        if let Ok(entries) = self.entries.lock()
            && let Some((at, h)) = entries.get(&key)
            && at.elapsed() < self.ttl
        {
            return h.clone();
        }
        let health = match tokio::time::timeout(self.bound, health(stored, master, policy, self.bound, now_ms)).await {
            Ok(h) => h,
            Err(_) => ClusterHealth::unreachable(
                now_ms,
                format!(
                    "cannot use the cluster at {}: no answer within {} ms",
                    stored.binding.bootstrap.join(","),
                    self.bound.as_millis()
                ),
            ),
        };
        if !health.reachable {
            metrics::counter!("kafka_tasks_cluster_unreachable_total").increment(1);
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= HEALTH_ENTRIES {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
                if entries.len() >= HEALTH_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(key, (std::time::Instant::now(), health.clone()));
        }
        health
    }
}

impl ClusterHealth {
    fn unreachable(now_ms: i64, error: String) -> ClusterHealth {
        let error: String = error.chars().filter(|c| !c.is_control()).take(512).collect();
        ClusterHealth {
            reachable: false,
            checked_at: now_ms,
            cluster_id: None,
            controller_id: None,
            broker_ids: Vec::new(),
            fenced_broker_ids: Vec::new(),
            metadata_version: None,
            features: Default::default(),
            error: Some(error),
        }
    }
}

async fn health(
    stored: &StoredBinding,
    master: &MasterKey,
    policy: &ClusterPolicy,
    timeout: Duration,
    now_ms: i64,
) -> ClusterHealth {
    let kafka = match connect(stored, master, policy, timeout).await {
        Ok(k) => k,
        Err(e) => return ClusterHealth::unreachable(now_ms, e.to_string()),
    };
    let view = match describe(&kafka, timeout).await {
        Ok(v) => v,
        Err(e) => return ClusterHealth::unreachable(now_ms, e.to_string()),
    };
    let options = krafka::admin::DescribeFeaturesOptions::default().timeout(timeout);
    let features: std::collections::BTreeMap<String, i16> = match kafka.admin().describe_features(options).await {
        Ok(f) => f.finalized.into_iter().map(|f| (f.name, f.max_version_level)).collect(),
        Err(e) => {
            tracing::debug!(error = %e, "the cluster did not describe its features");
            Default::default()
        }
    };
    ClusterHealth {
        reachable: true,
        checked_at: now_ms,
        cluster_id: Some(view.cluster_id),
        controller_id: Some(view.controller_id),
        broker_ids: view.brokers.iter().map(|b| b.id).collect(),
        fenced_broker_ids: view.brokers.iter().filter(|b| b.fenced).map(|b| b.id).collect(),
        metadata_version: features.get("metadata.version").copied(),
        features,
        error: None,
    }
}
