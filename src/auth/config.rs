//! The gateway's own settings: payload-hash policy, failed-signature throttling, the per-key rate
//! limit and which proxies may name the client. Flattened into `serve`'s arguments.

use clap::Args;

use super::client_addr::IpNet;

#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Accept `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` on requests that carry a body. Off by
    /// default: such a signature does not cover the body, so whoever captures one signed request
    /// can replay it with any body within the date window.
    #[arg(long, env = "KAFKA_TASKS_ALLOW_UNSIGNED_PAYLOAD", default_value_t = false)]
    pub allow_unsigned_payload: bool,

    /// Proxies (IPs or CIDRs, comma-separated) whose `X-Forwarded-For` names the client. The
    /// client is the right-most address in that header that is not itself a trusted proxy.
    /// Default: none (the TCP peer is the client).
    #[arg(long, env = "KAFKA_TASKS_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// Failed signatures one client address may send with one access key within
    /// `--auth-failure-window-secs` before its further failures are answered 429. A correct
    /// signature always passes.
    #[arg(long, env = "KAFKA_TASKS_AUTH_FAILURE_LIMIT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub auth_failure_limit: u32,

    /// The window (seconds) over which failed signatures are counted.
    #[arg(long, env = "KAFKA_TASKS_AUTH_FAILURE_WINDOW_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub auth_failure_window_secs: u64,

    /// Requests per second one access key (its signatures and its tokens together) may make;
    /// 0 turns the limit off. DMS's gateway throttles at 200 per user.
    #[arg(long, env = "KAFKA_TASKS_RATE_LIMIT_PER_KEY", default_value_t = 200)]
    pub rate_limit_per_key: u32,

    /// Requests one access key may make at once above its rate (the bucket's size).
    #[arg(long, env = "KAFKA_TASKS_RATE_LIMIT_BURST", default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,

    /// Signed request bodies one client address may have being read at once before their
    /// signature is verified; more are answered 429 at once. An access key is not a secret, so
    /// without this cap one stranger holding slow bodies could spend the whole body budget.
    #[arg(long, env = "KAFKA_TASKS_MAX_UNVERIFIED_BODIES_PER_CLIENT", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_unverified_bodies_per_client: u32,

    /// The region a `V11-HMAC-SHA256` (derived AK/SK) signature's credential scope must name:
    /// the SDKs put their client's region id there.
    #[arg(long, env = "KAFKA_TASKS_SIGNING_REGION", default_value = "cn-north-4", value_parser = parse_scope_part)]
    pub signing_region: String,

    /// The service a `V11-HMAC-SHA256` signature's credential scope must name: the SDKs put the
    /// client builder's derived-auth service name there (the Kafka SDKs set none of their own,
    /// so the caller chooses; `dms` is the endpoint's service name).
    #[arg(long, env = "KAFKA_TASKS_SIGNING_SERVICE", default_value = "dms", value_parser = parse_scope_part)]
    pub signing_service: String,
}

impl Default for AuthArgs {
    fn default() -> Self {
        AuthArgs {
            allow_unsigned_payload: false,
            trusted_proxies: Vec::new(),
            auth_failure_limit: 10,
            auth_failure_window_secs: 60,
            rate_limit_per_key: 200,
            rate_limit_burst: 400,
            max_unverified_bodies_per_client: 8,
            signing_region: "cn-north-4".into(),
            signing_service: "dms".into(),
        }
    }
}

/// A region or service name: what a credential scope's part can be (no `/`, no spaces).
fn parse_scope_part(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(s.to_owned()) } else { Err("letters, digits, '-', '_' and '.' only (at most 64)".into()) }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    s.trim().parse()
}
