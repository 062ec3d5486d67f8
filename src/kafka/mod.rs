//! Connected mode's side of the wire to a real Apache Kafka cluster: connecting as a binding
//! says ([`crate::domain::cluster`]), and what the operations read from and do to the cluster.
//! Every call is bounded by a deadline; every failure says what was tried and what answered.

use std::time::Duration;

use crate::auth::keys::MasterKey;
use crate::domain::cluster::{ClusterPolicy, MAX_FILE_BYTES, PasswordSource, SecurityProtocol};
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

pub use crate::wire::cluster::{BrokerView, ClusterView};

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
            let real = policy.check_file(path).map_err(ClusterError::Password)?;
            let (bytes, mode) =
                read_named_file(&real).map_err(|e| ClusterError::Password(format!("{}: {e}", path.display())))?;
            if mode & 0o077 != 0 {
                return Err(ClusterError::Password(format!("{} is readable by others: chmod 600 it", path.display())));
            }
            let text = String::from_utf8(bytes)
                .map_err(|_| ClusterError::Password(format!("{} is not UTF-8 text", path.display())))?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    Ok(Some(secret))
}

/// The largest answer frame taken from a cluster (krafka's default is 100 MiB). A cluster's
/// answers to the admin calls made here (Metadata, DescribeLogDirs of a broker) stay far below
/// this even with hundreds of thousands of partitions; a hostile "broker" at an allowed address
/// can make the server buffer at most this much per connection.
const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// A file a binding names (already checked by [`ClusterPolicy::check_file`]): its bytes, at most
/// [`MAX_FILE_BYTES`], and its mode. Opened without blocking and checked again on the open
/// handle, so that a FIFO or device swapped in since the check is refused rather than waited on.
fn read_named_file(path: &std::path::Path) -> std::io::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    #[cfg(unix)]
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
    #[cfg(not(unix))]
    let mode = 0;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok((bytes, mode))
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
        .request_timeout(timeout)
        .max_response_size(MAX_RESPONSE_BYTES);
    // What the operator allows is checked at every use, not only when binding: the flags may
    // have changed since, and a file may have been swapped for a link.
    policy.permits(b).map_err(ClusterError::Config)?;
    let password = password(stored, master, policy)?;
    // The CA file is read here, not by the client library: bounded, and never blocking on
    // something that is not a regular file.
    let ca = match b.ssl_ca_file.as_ref().filter(|_| b.protocol.tls()) {
        Some(file) => {
            let real = policy.check_file(file).map_err(ClusterError::Config)?;
            let (pem, _) =
                read_named_file(&real).map_err(|e| ClusterError::Config(format!("{}: {e}", file.display())))?;
            Some(pem)
        }
        None => None,
    };
    let tls = b.protocol.tls().then(|| {
        let tls = krafka::auth::TlsConfig::new();
        match ca {
            Some(pem) => tls.with_ca_cert_pem(pem),
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
    let kafka = match tokio::time::timeout(timeout, builder.connect()).await {
        Ok(Ok(kafka)) => kafka,
        Ok(Err(e)) => return Err(unreachable(e)),
        Err(_) => {
            return Err(ClusterError::Unreachable {
                servers,
                why: format!("no answer within {} s", timeout.as_secs()),
            });
        }
    };
    // Connecting asked only the bootstrap servers; every later request goes to the addresses
    // the cluster advertises for its brokers. A cluster that advertises an address the operator
    // does not allow is refused here, before anything is sent there: otherwise a tenant's
    // "cluster" could make the server connect wherever it can reach.
    for broker in krafka::__private::kafka_metadata(&kafka).brokers() {
        policy.permits_host(broker.host()).map_err(|why| {
            ClusterError::Config(format!(
                "the cluster at {servers} advertises broker {} at {}: {why}",
                broker.id(),
                broker.address()
            ))
        })?;
    }
    Ok(kafka)
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
        .map(|b| BrokerView { fenced: b.is_fenced, host: b.host, id: b.id, port: b.port })
        .collect();
    brokers.sort_by_key(|b| b.id);
    Ok(ClusterView { brokers, cluster_id: d.cluster_id, controller_id: d.controller_id })
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
            Err(_) => unreachable(
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

/// The health of a cluster that did not answer (the error cut to 512 printable characters).
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
        supported_metadata_version: None,
        error: Some(error),
    }
}

async fn health(
    stored: &StoredBinding,
    master: &MasterKey,
    policy: &ClusterPolicy,
    timeout: Duration,
    now_ms: i64,
) -> ClusterHealth {
    let started = std::time::Instant::now();
    let kafka = match connect(stored, master, policy, timeout).await {
        Ok(k) => k,
        Err(e) => return unreachable(now_ms, e.to_string()),
    };
    let view = match describe(&kafka, timeout).await {
        Ok(v) => v,
        Err(e) => return unreachable(now_ms, e.to_string()),
    };
    let options = krafka::admin::DescribeFeaturesOptions::default().timeout(timeout);
    let features: std::collections::BTreeMap<String, i16> = match kafka.admin().describe_features(options).await {
        Ok(f) => f.finalized.into_iter().map(|f| (f.name, f.max_version_level)).collect(),
        Err(e) => {
            tracing::debug!(error = %e, "the cluster did not describe its features");
            Default::default()
        }
    };
    // Best effort, in what is left of the bound (less a margin for the answer): a broker that does
    // not describe its features in time leaves the level unknown, not the cluster unreachable.
    let left = timeout.saturating_sub(started.elapsed()).saturating_sub(Duration::from_millis(100));
    let supported_metadata_version = match tokio::time::timeout(left, running(&kafka, &view.brokers, left)).await {
        Ok(Ok(r)) => Some(r.level),
        Err(_) => {
            tracing::debug!("the brokers did not describe their supported features within the bound");
            None
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the brokers did not describe their supported features");
            None
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
        supported_metadata_version,
        error: None,
    }
}

/// Where each Apache Kafka release line's brokers top out in `metadata.version` (the highest
/// production level a broker of that line supports), newest first. From Kafka's MetadataVersion;
/// `kafka-features version-mapping --release X.Y` prints each line's level (4.0 → 25, 4.1 → 27,
/// 4.2 → 29, 4.3 → 30).
const RELEASE_LINES: &[(i16, &str)] = &[
    (30, "4.3"),
    (29, "4.2"),
    (27, "4.1"),
    (25, "4.0"),
    (21, "3.9"),
    (20, "3.8"),
    (19, "3.7"),
    (14, "3.6"),
    (11, "3.5"),
    (8, "3.4"),
    (7, "3.3"),
];

/// The release line (`4.3`) of a broker whose highest supported `metadata.version` is `level`;
/// `None` for a level the table does not know (newer than its newest line, or older than KRaft).
pub fn release_line(level: i16) -> Option<&'static str> {
    if level > RELEASE_LINES[0].0 {
        // A level past the newest line's is a newer release's (or an unstable level turned on).
        return None;
    }
    RELEASE_LINES.iter().find(|(from, _)| level >= *from).map(|(_, line)| *line)
}

/// The Apache Kafka release a kernel build runs: the `X.Y.Z` its name starts with
/// (`4.3.2-h0.cbu.dms.200.r0` → 4.3.2).
pub fn release_of(build: &str) -> Option<&str> {
    let end = build.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(build.len());
    let release = &build[..end];
    let parts: Vec<&str> = release.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.len() <= 4)).then_some(release)
}

/// What a bound cluster runs, as far as the Kafka protocol shows it: each broker's highest
/// supported `metadata.version` (DescribeFeatures, asked of each broker), the lowest of them
/// mapped to its release line. The patch release is not visible (4.3.0 and 4.3.2 support the same
/// levels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The lowest supported level across the brokers.
    pub level: i16,
    /// Its release line, when known.
    pub line: Option<&'static str>,
}

impl Running {
    pub fn at(level: i16) -> Running {
        Running { level, line: release_line(level) }
    }

    /// ShowUpgradeInstanceVersion's `current_version`: the newest of `builds` on the cluster's
    /// release line, else the line itself (`4.0`), else the level.
    pub fn current_build(&self, builds: &[String]) -> String {
        let Some(line) = self.line else { return format!("metadata.version {}", self.level) };
        builds
            .iter()
            .rev()
            .find(|b| release_of(b).and_then(|r| r.strip_prefix(line)).is_some_and(|rest| rest.starts_with('.')))
            .cloned()
            .unwrap_or_else(|| line.to_owned())
    }
}

/// Asks each of `brokers` (as DescribeCluster listed them), side by side, for its supported
/// features ([`Running`]).
pub async fn running(
    kafka: &krafka::Kafka,
    brokers: &[BrokerView],
    timeout: Duration,
) -> Result<Running, ClusterError> {
    let admin = kafka.admin();
    let asks = brokers.iter().map(|b| {
        let admin = &admin;
        async move {
            let options = krafka::admin::DescribeFeaturesOptions::default().timeout(timeout).node_id(b.id);
            let unanswered = |why: String| ClusterError::Unreachable {
                servers: format!("{}:{}", b.host, b.port),
                why: format!("broker {} did not describe its features: {why}", b.id),
            };
            let f = match tokio::time::timeout(timeout, admin.describe_features(options)).await {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => return Err(unanswered(e.to_string())),
                Err(_) => return Err(unanswered(format!("no answer within {} s", timeout.as_secs()))),
            };
            let max = f.supported.iter().find(|s| s.name == "metadata.version").map(|s| s.max_version);
            max.ok_or_else(|| unanswered("it lists no metadata.version".to_owned()))
        }
    });
    let levels = futures_util::future::join_all(asks).await.into_iter().collect::<Result<Vec<i16>, _>>()?;
    let level = levels.iter().copied().min().ok_or_else(|| ClusterError::Unreachable {
        servers: String::new(),
        why: "DescribeCluster shows no broker".to_owned(),
    })?;
    Ok(Running::at(level))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_brokers_metadata_version_names_its_release_line() {
        assert_eq!(release_line(25), Some("4.0"));
        assert_eq!(release_line(26), Some("4.0"));
        assert_eq!(release_line(27), Some("4.1"));
        assert_eq!(release_line(29), Some("4.2"));
        assert_eq!(release_line(30), Some("4.3"));
        assert_eq!(release_line(31), None);
        assert_eq!(release_line(6), None);
        assert_eq!(release_line(-1), None);
    }

    #[test]
    fn the_current_build_is_the_newest_on_the_clusters_line() {
        let builds: Vec<String> =
            ["2.7.1-h0.cbu.dms.101.r0", "4.3.0-h0.cbu.dms.1.r0", "4.3.2-h0.cbu.dms.200.r0", "4.30.1-h0"]
                .map(str::to_owned)
                .into();
        let on = Running::at;
        assert_eq!(on(30).current_build(&builds), "4.3.2-h0.cbu.dms.200.r0");
        assert_eq!(on(25).current_build(&builds), "4.0");
        assert_eq!(on(40).current_build(&builds), "metadata.version 40");
    }

    #[test]
    fn a_build_names_its_release() {
        assert_eq!(release_of("4.3.2-h0.cbu.dms.100.r0"), Some("4.3.2"));
        assert_eq!(release_of("4.3.2"), Some("4.3.2"));
        assert_eq!(release_of("4.3-h0"), None);
        assert_eq!(release_of("latest"), None);
        assert_eq!(release_of("4..2"), None);
    }
}
