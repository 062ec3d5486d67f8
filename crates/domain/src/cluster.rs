//! Binding an instance to a real Apache Kafka cluster (connected mode, an extension of the DMS
//! API): where the cluster is, how to authenticate to it, and which program does what the Kafka
//! protocol cannot (restarting a broker). An instance with a binding has its operations done on
//! that cluster; one without is simulated (or handed to the executor file's programs).
//!
//! The rules here are pure: what a binding may say. Secrets are never part of a [`Binding`]: a
//! SASL password is named by where it is ([`PasswordSource`]); one given inline is sealed with the
//! master key by the caller before it is stored, and never shown again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Bootstrap servers a binding may list.
pub const MAX_BOOTSTRAP: usize = 16;
/// The longest SASL user name and environment variable name accepted.
const MAX_NAME: usize = 256;
/// The longest inline password accepted.
const MAX_PASSWORD: usize = 1024;
/// The longest path accepted.
const MAX_PATH: usize = 4096;

/// How the cluster's listener is reached, as Kafka names it (`security.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum SecurityProtocol {
    #[default]
    PLAINTEXT,
    SASL_PLAINTEXT,
    SSL,
    SASL_SSL,
}

impl SecurityProtocol {
    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SASL_PLAINTEXT | SecurityProtocol::SASL_SSL)
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::SSL | SecurityProtocol::SASL_SSL)
    }
}

/// A binding as an admin sends it (`PUT …/instances/{instance_id}/cluster`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    /// `host:port` pairs, comma-separated, as Kafka's `bootstrap.servers`.
    #[schema(example = "10.0.0.1:9092,10.0.0.2:9092")]
    pub bootstrap_servers: String,
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// `SCRAM-SHA-512`, the one mechanism supported (and the default) with a SASL protocol.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// The password itself: sealed with the master key when stored, never shown again.
    pub sasl_password: Option<String>,
    /// Or the environment variable of the server process that holds it.
    pub sasl_password_env: Option<String>,
    /// Or a file (mode 0600 or stricter) that holds it.
    pub sasl_password_file: Option<String>,
    /// The CA certificate(s), PEM, that the cluster's TLS certificates are checked against.
    pub ssl_ca_file: Option<String>,
    /// The program that restarts, reconfigures, upgrades and adds brokers (absolute path, executable).
    pub broker_control: Option<String>,
}

/// Where a SASL password is read from when the cluster is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSource {
    /// Stored sealed with the master key beside the binding.
    Sealed,
    Env(String),
    File(PathBuf),
}

/// SASL/SCRAM-SHA-512 credentials, without the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sasl {
    pub username: String,
    pub password: PasswordSource,
}

/// A checked binding: what is stored (with a sealed password beside it, if one was given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub bootstrap: Vec<String>,
    pub protocol: SecurityProtocol,
    pub sasl: Option<Sasl>,
    pub ssl_ca_file: Option<PathBuf>,
    pub broker_control: Option<PathBuf>,
}

impl BindingRequest {
    /// Checks the request; returns the binding and the inline password to seal, if any.
    pub fn check(self) -> Result<(Binding, Option<String>), Invalid> {
        let bootstrap = bootstrap_servers(&self.bootstrap_servers)?;
        let protocol = self.security_protocol;
        let (sasl, inline) = if protocol.sasl() {
            if self.sasl_mechanism.as_deref().is_some_and(|m| m != "SCRAM-SHA-512") {
                return Err(Invalid::Param("sasl_mechanism"));
            }
            let username = self
                .sasl_username
                .filter(|u| !u.is_empty() && u.len() <= MAX_NAME && !u.chars().any(char::is_control))
                .ok_or(Invalid::Param("sasl_username"))?;
            let (password, inline) = match (self.sasl_password, self.sasl_password_env, self.sasl_password_file) {
                (Some(p), None, None) if !p.is_empty() && p.len() <= MAX_PASSWORD => (PasswordSource::Sealed, Some(p)),
                (None, Some(env), None) if env_name(&env) => (PasswordSource::Env(env), None),
                (None, None, Some(file)) => (PasswordSource::File(absolute(&file, "sasl_password_file")?), None),
                _ => return Err(Invalid::Param("sasl_password")),
            };
            (Some(Sasl { username, password }), inline)
        } else {
            let stray = self.sasl_mechanism.is_some()
                || self.sasl_username.is_some()
                || self.sasl_password.is_some()
                || self.sasl_password_env.is_some()
                || self.sasl_password_file.is_some();
            if stray {
                return Err(Invalid::Param("security_protocol"));
            }
            (None, None)
        };
        let ssl_ca_file = match (protocol.tls(), self.ssl_ca_file) {
            (true, Some(f)) => Some(absolute(&f, "ssl_ca_file")?),
            (true, None) => None,
            (false, Some(_)) => return Err(Invalid::Param("ssl_ca_file")),
            (false, None) => None,
        };
        let broker_control = self.broker_control.map(|p| absolute(&p, "broker_control")).transpose()?;
        Ok((Binding { bootstrap, protocol, sasl, ssl_ca_file, broker_control }, inline))
    }
}

/// `host:port[,host:port…]`: hosts are names, IPv4 addresses or bracketed IPv6 addresses.
fn bootstrap_servers(s: &str) -> Result<Vec<String>, Invalid> {
    let bad = Invalid::Param("bootstrap_servers");
    let list: Vec<String> = s.split(',').map(|p| p.trim().to_owned()).collect();
    if list.is_empty() || list.len() > MAX_BOOTSTRAP {
        return Err(bad);
    }
    for server in &list {
        let (host, port) = server.rsplit_once(':').ok_or(bad.clone())?;
        port.parse::<u16>().ok().filter(|p| *p > 0).ok_or(bad.clone())?;
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if !host_ok {
            return Err(bad);
        }
    }
    Ok(list)
}

fn env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn absolute(s: &str, field: &'static str) -> Result<PathBuf, Invalid> {
    let p = PathBuf::from(s);
    if s.len() > MAX_PATH || !p.is_absolute() || s.chars().any(char::is_control) {
        return Err(Invalid::Param(field));
    }
    Ok(p)
}

/// A binding as it is shown (`GET …/cluster`): everything but secrets. Its fields are in
/// alphabetical order, as every answer of the wire is (see the wire crate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BindingView {
    pub bootstrap_servers: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    /// Where the password is read from: `sealed` (stored, never shown), `env:NAME` or `file:PATH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_password_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    pub security_protocol: SecurityProtocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_ca_file: Option<String>,
}

impl Binding {
    pub fn view(&self) -> BindingView {
        BindingView {
            bootstrap_servers: self.bootstrap.join(","),
            security_protocol: self.protocol,
            sasl_mechanism: self.sasl.as_ref().map(|_| "SCRAM-SHA-512".to_owned()),
            sasl_username: self.sasl.as_ref().map(|s| s.username.clone()),
            sasl_password_source: self.sasl.as_ref().map(|s| match &s.password {
                PasswordSource::Sealed => "sealed".to_owned(),
                PasswordSource::Env(name) => format!("env:{name}"),
                PasswordSource::File(path) => format!("file:{}", path.display()),
            }),
            ssl_ca_file: self.ssl_ca_file.as_ref().map(|p| p.display().to_string()),
            broker_control: self.broker_control.as_ref().map(|p| p.display().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> Result<(Binding, Option<String>), Invalid> {
        serde_json::from_value::<BindingRequest>(v).map_err(|_| Invalid::Body)?.check()
    }

    #[test]
    fn a_plaintext_binding_lists_its_servers() {
        let (b, secret) =
            req(serde_json::json!({"bootstrap_servers": "127.0.0.1:19092, kafka-1.internal:9092,[::1]:9092"}))
                .expect("valid");
        assert_eq!(b.bootstrap, ["127.0.0.1:19092", "kafka-1.internal:9092", "[::1]:9092"]);
        assert_eq!((b.protocol, b.sasl, secret), (SecurityProtocol::PLAINTEXT, None, None));
    }

    #[test]
    fn scram_takes_exactly_one_password_source_and_never_shows_it() {
        let (b, secret) = req(serde_json::json!({"bootstrap_servers": "k:9092", "security_protocol": "SASL_PLAINTEXT",
            "sasl_username": "ops", "sasl_password": "s3cret"}))
        .expect("valid");
        assert_eq!(secret.as_deref(), Some("s3cret"));
        let shown = serde_json::to_string(&b.view()).expect("json");
        assert!(!shown.contains("s3cret") && shown.contains("\"sealed\""), "{shown}");
        let stored = serde_json::to_string(&b).expect("json");
        assert!(!stored.contains("s3cret"), "{stored}");
        for bad in [
            serde_json::json!({"bootstrap_servers": "k:9092", "security_protocol": "SASL_SSL", "sasl_username": "ops"}),
            serde_json::json!({"bootstrap_servers": "k:9092", "security_protocol": "SASL_SSL", "sasl_username": "ops",
                "sasl_password": "a", "sasl_password_env": "B"}),
            serde_json::json!({"bootstrap_servers": "k:9092", "security_protocol": "SASL_SSL", "sasl_username": "ops",
                "sasl_password_file": "relative/file"}),
            serde_json::json!({"bootstrap_servers": "k:9092", "security_protocol": "SASL_SSL", "sasl_username": "ops",
                "sasl_password_env": "1BAD"}),
            serde_json::json!({"bootstrap_servers": "k:9092", "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN", "sasl_username": "ops", "sasl_password": "a"}),
        ] {
            assert!(req(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_that_do_not_fit_the_protocol_are_refused() {
        for bad in [
            serde_json::json!({"bootstrap_servers": "k:9092", "sasl_username": "ops"}),
            serde_json::json!({"bootstrap_servers": "k:9092", "ssl_ca_file": "/etc/ca.pem"}),
            serde_json::json!({"bootstrap_servers": "k:9092", "broker_control": "bin/control"}),
            serde_json::json!({"bootstrap_servers": "k:9092", "unknown": 1}),
        ] {
            assert!(req(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn bootstrap_servers_are_host_port_pairs() {
        for bad in ["", "k", "k:", "k:0", "k:65536", "-k:9092", "k..x:9092", "k\t:9092", "[zz]:9092", "k:9092,"] {
            assert!(bootstrap_servers(bad).is_err(), "{bad:?}");
        }
        let many = vec!["k:9092"; MAX_BOOTSTRAP + 1].join(",");
        assert!(bootstrap_servers(&many).is_err());
    }
}

/// The prefix every environment variable a binding may name starts with: a binding must not
/// make the server use its own settings (its master key, its database URL) as a password.
pub const PASSWORD_ENV_PREFIX: &str = "KAFKA_TASKS_CLUSTER_";

/// What the operator lets bindings reach (`serve --cluster-allow`, `--cluster-secrets-dir`). A
/// project admin is a tenant: without these, binding would let one make the server connect to
/// any address it can reach (its own network included) and read any file it can read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterPolicy {
    pub allow: Vec<AllowRule>,
    /// Where password and CA files must be; `None`: no file may be named.
    pub secrets_dir: Option<PathBuf>,
    /// Where a binding's broker-control program must be; `None`: no binding may name one. The
    /// program runs on this server's host, so it is the operator's to allow, not a tenant's.
    pub control_dir: Option<PathBuf>,
}

/// One `--cluster-allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// An address or CIDR block, for bootstrap servers given as addresses.
    Net(super::net::IpNet),
    /// A host name, exactly (case-insensitive).
    Host(String),
    /// `*.example.com`: any name under that domain.
    Domain(String),
}

impl std::str::FromStr for AllowRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse() {
            return Ok(AllowRule::Net(net));
        }
        let (rule, name) = match s.strip_prefix("*.") {
            Some(domain) => (AllowRule::Domain(domain.to_ascii_lowercase()), domain),
            None => (AllowRule::Host(s.to_ascii_lowercase()), s),
        };
        if bootstrap_servers(&format!("{name}:1")).is_err() {
            return Err(format!("{s:?} is not an address, CIDR block, host name or *.domain"));
        }
        Ok(rule)
    }
}

impl AllowRule {
    fn permits(&self, host: &str) -> bool {
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let ip = literal.parse::<std::net::IpAddr>().ok();
        let host = host.to_ascii_lowercase();
        match (self, ip) {
            (AllowRule::Net(net), Some(ip)) => net.contains(ip),
            (AllowRule::Host(name), None) => *name == host,
            (AllowRule::Domain(domain), None) => host.strip_suffix(domain.as_str()).is_some_and(|h| h.ends_with('.')),
            _ => false,
        }
    }
}

impl ClusterPolicy {
    /// Whether the operator lets `b` be used; the reason, in words for the admin, when not.
    pub fn permits(&self, b: &Binding) -> Result<(), String> {
        for server in &b.bootstrap {
            self.permits_host(server.rsplit_once(':').map_or(server.as_str(), |(h, _)| h))?;
        }
        if let Some(PasswordSource::Env(name)) = b.sasl.as_ref().map(|s| &s.password)
            && !name.starts_with(PASSWORD_ENV_PREFIX)
        {
            return Err(format!("a password variable's name must start with {PASSWORD_ENV_PREFIX}"));
        }
        let files = b.sasl.iter().filter_map(|s| match &s.password {
            PasswordSource::File(p) => Some(p),
            _ => None,
        });
        for file in files.chain(b.ssl_ca_file.iter()) {
            self.check_file(file)?;
        }
        if let Some(program) = &b.broker_control {
            self.check_control(program)?;
        }
        Ok(())
    }

    /// Whether `host` (a name, an address, or a bracketed IPv6 address) is one the operator lets
    /// the server connect to: a bootstrap server, or a broker a cluster advertises.
    pub fn permits_host(&self, host: &str) -> Result<(), String> {
        if self.allow.iter().any(|r| r.permits(host)) {
            return Ok(());
        }
        Err(if self.allow.is_empty() {
            "this server binds no cluster: its operator allows clusters with `serve --cluster-allow`".to_owned()
        } else {
            format!("{host} is not among the clusters this server's operator allows (`serve --cluster-allow`)")
        })
    }

    /// A broker-control program must be under the operator's directory for them, links
    /// resolved (checked when binding and again before every run).
    pub fn check_control(&self, program: &Path) -> Result<(), String> {
        let Some(dir) = &self.control_dir else {
            return Err("this server runs no broker-control program: its operator names a directory for them with \
                        `serve --broker-control-dir`"
                .to_owned());
        };
        under(dir, program, "broker-control directory").map(drop)
    }

    /// A file a binding names must be a regular file of at most [`MAX_FILE_BYTES`] under the
    /// secrets directory, links resolved (checked when binding and again when the file is read,
    /// so that a link swapped later is caught). A FIFO, a device or a directory is refused: the
    /// server must never block reading one. Returns the resolved path.
    pub fn check_file(&self, file: &Path) -> Result<PathBuf, String> {
        let Some(dir) = &self.secrets_dir else {
            return Err("this server reads no file for a binding: its operator names a directory for them with \
                        `serve --cluster-secrets-dir`"
                .to_owned());
        };
        let real = under(dir, file, "secrets directory")?;
        let meta = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", file.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", file.display()));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!("{} is larger than {MAX_FILE_BYTES} bytes", file.display()));
        }
        Ok(real)
    }
}

/// The largest password or CA file a binding may name.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// `path` resolved, when it is under `dir` (links resolved). A path that is not under `dir` as
/// written (or climbs out with `..`) is refused before anything on the disk is looked at, in the
/// same words whether it exists or not: the answer must not tell a tenant what is on the
/// server's disk outside the operator's directory.
fn under(dir: &Path, path: &Path, what: &str) -> Result<PathBuf, String> {
    let real_dir = dir.canonicalize().map_err(|e| format!("the {what} {}: {e}", dir.display()))?;
    let outside = || format!("{} is not under the {what} {}", path.display(), real_dir.display());
    let climbs = path.components().any(|c| c == std::path::Component::ParentDir);
    if climbs || !(path.starts_with(dir) || path.starts_with(&real_dir)) {
        return Err(outside());
    }
    let real = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
    if !real.starts_with(&real_dir) {
        return Err(outside());
    }
    Ok(real)
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    fn binding(servers: &str) -> Binding {
        BindingRequest { bootstrap_servers: servers.into(), ..Default::default() }.check().expect("valid").0
    }

    #[test]
    fn only_what_the_operator_allows_is_bound() {
        let none = ClusterPolicy::default();
        assert!(none.permits(&binding("127.0.0.1:9092")).unwrap_err().contains("--cluster-allow"));
        let p = ClusterPolicy {
            allow: ["10.1.0.0/16", "kafka.internal", "*.kafka.example.com", "::1"]
                .iter()
                .map(|r| r.parse().expect("rule"))
                .collect(),
            secrets_dir: None,
            control_dir: None,
        };
        for ok in ["10.1.2.3:9092", "KAFKA.internal:9092", "b1.kafka.example.com:9092,[::1]:9092"] {
            assert_eq!(p.permits(&binding(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "10.2.0.1:9092",
            "169.254.169.254:80",
            "kafka.internal.evil.com:9092",
            "evilkafka.example.com:9092",
            "kafka.example.com:9092",
            "10.1.2.3:9092,127.0.0.1:9092",
        ] {
            assert!(p.permits(&binding(bad)).is_err(), "{bad}");
        }
        assert!("not a host!".parse::<AllowRule>().is_err());
    }

    #[test]
    fn passwords_come_only_from_the_operators_variables_and_directory() {
        let dir = std::env::temp_dir().join(format!("kt-policy-{}", std::process::id()));
        let inside = dir.join("secrets");
        std::fs::create_dir_all(&inside).expect("dir");
        std::fs::write(inside.join("pw"), "x").expect("file");
        std::fs::write(dir.join("outside"), "x").expect("file");
        let p = ClusterPolicy {
            allow: vec!["127.0.0.1".parse().expect("rule")],
            secrets_dir: Some(inside.clone()),
            control_dir: None,
        };
        let with = |source: PasswordSource| {
            let mut b = binding("127.0.0.1:9092");
            b.protocol = SecurityProtocol::SASL_PLAINTEXT;
            b.sasl = Some(Sasl { username: "u".into(), password: source });
            p.permits(&b)
        };
        assert_eq!(with(PasswordSource::Env("KAFKA_TASKS_CLUSTER_PW".into())), Ok(()));
        assert!(with(PasswordSource::Env("KAFKA_TASKS_MASTER_KEY".into())).is_err());
        assert_eq!(with(PasswordSource::File(inside.join("pw"))), Ok(()));
        assert!(with(PasswordSource::File(dir.join("outside"))).is_err());
        assert!(with(PasswordSource::File(inside.join("../outside"))).is_err(), "a path that climbs out");
        #[cfg(unix)]
        {
            let _ = std::os::unix::fs::symlink(dir.join("outside"), inside.join("link"));
            assert!(with(PasswordSource::File(inside.join("link"))).is_err(), "a link out of the directory");
        }
        let no_dir = ClusterPolicy { secrets_dir: None, ..p.clone() };
        let mut b = binding("127.0.0.1:9092");
        b.protocol = SecurityProtocol::SSL;
        b.ssl_ca_file = Some(inside.join("pw"));
        assert!(no_dir.permits(&b).unwrap_err().contains("--cluster-secrets-dir"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_broker_control_program_runs_only_from_the_operators_directory() {
        let dir = std::env::temp_dir().join(format!("kt-control-{}", std::process::id()));
        let inside = dir.join("control");
        std::fs::create_dir_all(&inside).expect("dir");
        std::fs::write(inside.join("roll"), "x").expect("file");
        std::fs::write(dir.join("sh"), "x").expect("file");
        let with = |control_dir: Option<PathBuf>, program: PathBuf| {
            let mut b = binding("127.0.0.1:9092");
            b.broker_control = Some(program);
            ClusterPolicy { allow: vec!["127.0.0.1".parse().expect("rule")], secrets_dir: None, control_dir }
                .permits(&b)
        };
        let roll = inside.join("roll");
        assert!(with(None, roll.clone()).unwrap_err().contains("--broker-control-dir"));
        assert_eq!(with(Some(inside.clone()), roll), Ok(()));
        assert!(with(Some(inside.clone()), dir.join("sh")).is_err());
        assert!(with(Some(inside.clone()), inside.join("../sh")).is_err(), "a path that climbs out");
        #[cfg(unix)]
        {
            let _ = std::os::unix::fs::symlink(dir.join("sh"), inside.join("link"));
            assert!(with(Some(inside.clone()), inside.join("link")).is_err(), "a link out of the directory");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
