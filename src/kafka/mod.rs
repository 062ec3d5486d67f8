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
