//! The CLI's connection to the service: where it is, who is calling (AK/SK signed with the
//! server's own [`Signer`], or a token), and one `send` that turns every answer into JSON or a
//! [`Failure`] carrying the DMS error code, message and request id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use kafka_tasks_domain::now_ms;
use kafka_tasks_wire::instance::InstanceJson;
use kafka_tasks_wire::signature::{Algorithm, Signer, sdk_date};
use kafka_tasks_wire::task::TaskList;

use super::hints::{Facts, Op, hint, key_shape};
use super::{Conn, Failure};

/// The endpoint when neither `--endpoint`, `KAFKA_TASKS_ENDPOINT` nor the profile names one.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// How many times a request refused with 429 is sent again (after its `Retry-After`).
const RETRIES_ON_429: u32 = 5;

/// How the client signs with an AK/SK: every mode the official SDKs offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Signing {
    /// SDK-HMAC-SHA256, every SDK's default.
    #[default]
    #[value(name = "hmac-sha256")]
    HmacSha256,
    /// SDK-HMAC-SM3.
    #[value(name = "hmac-sm3")]
    HmacSm3,
    /// SDK-ECDSA-P256-SHA256: ECDSA with a key pair derived from the secret key.
    #[value(name = "ecdsa-p256-sha256")]
    EcdsaP256Sha256,
    /// SDK-SM2-SM3: SM2 with a key pair derived from the secret key.
    #[value(name = "sm2-sm3")]
    Sm2Sm3,
    /// V11-HMAC-SHA256: derived AK/SK, scoped to a day, region and service.
    #[value(name = "v11-hmac-sha256")]
    V11HmacSha256,
}

impl Signing {
    pub fn algorithm(self) -> Algorithm {
        match self {
            Signing::HmacSha256 => Algorithm::Sha256,
            Signing::HmacSm3 => Algorithm::Sm3,
            Signing::EcdsaP256Sha256 => Algorithm::EcdsaP256,
            Signing::Sm2Sm3 => Algorithm::Sm2,
            Signing::V11HmacSha256 => Algorithm::V11,
        }
    }
}

/// Secrets whose `Debug` says nothing.
#[derive(Clone)]
pub enum Credentials {
    AkSk { access_key: String, secret_key: String },
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::AkSk { access_key, .. } => write!(f, "AkSk({access_key}, <redacted>)"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// One profile of the profiles file. Every field is optional; flags and the environment win
/// over `endpoint` and `project_id`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A CA certificate file (PEM) to trust, besides the system's roots, for an https endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// `$KAFKA_TASKS_PROFILES`, else `$XDG_CONFIG_HOME/kafka-tasks/profiles.toml`, else
/// `~/.config/kafka-tasks/profiles.toml`.
pub fn profiles_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KAFKA_TASKS_PROFILES").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("kafka-tasks").join("profiles.toml"))
}

/// Reads the profiles file, refusing one that others may read (it holds secret keys).
pub fn read_profiles(path: &Path) -> Result<BTreeMap<String, Profile>, Failure> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::Usage(format!("cannot read the profiles file {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Failure::Usage(format!(
            "refusing to read {}: it holds secret keys but its mode is {mode:04o} (group or others may read it); \
             run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read the profiles file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
}

/// Everything a request needs: resolved once from flags, environment and profile.
#[derive(Debug, Clone)]
pub struct Api {
    endpoint: String,
    /// `host[:port]` as sent and signed.
    host: String,
    pub project: String,
    creds: Credentials,
    http: reqwest::Client,
    /// The signing mode, and V11's region and service.
    signing: (Signing, String, String),
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Api {
    /// Resolves the connection. Credentials: `--profile NAME`; else `HUAWEICLOUD_SDK_AK` +
    /// `HUAWEICLOUD_SDK_SK`; else `KAFKA_TASKS_TOKEN`; else the profile `default` when the
    /// profiles file exists.
    pub fn from_conn(conn: &Conn) -> Result<Api, Failure> {
        let mut profile = Profile::default();
        let from_file = |name: &str| -> Result<Profile, Failure> {
            let path = profiles_path().ok_or_else(|| Failure::Usage("no HOME to find the profiles file in".into()))?;
            let mut all = read_profiles(&path)?;
            all.remove(name).ok_or_else(|| Failure::Usage(format!("no profile [{name}] in {}", path.display())))
        };
        let creds = if let Some(name) = &conn.profile {
            profile = from_file(name)?;
            profile_creds(&profile, name)?
        } else if let (Some(ak), Some(sk)) = (env("HUAWEICLOUD_SDK_AK"), env("HUAWEICLOUD_SDK_SK")) {
            Credentials::AkSk { access_key: ak, secret_key: sk }
        } else if let Some(t) = env("KAFKA_TASKS_TOKEN") {
            Credentials::Token(t)
        } else if profiles_path().is_some_and(|p| p.exists()) {
            profile = from_file("default")?;
            profile_creds(&profile, "default")?
        } else {
            return Err(Failure::Usage(
                "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (or KAFKA_TASKS_TOKEN), \
                 or name a profile with --profile"
                    .into(),
            ));
        };
        let endpoint = conn.endpoint.clone().or(profile.endpoint.take()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let project = conn.project_id.clone().or(profile.project_id.take()).ok_or_else(|| {
            Failure::Usage(
                "no project: set HUAWEICLOUD_SDK_PROJECT_ID or --project-id (or project_id in the profile)".into(),
            )
        })?;
        if project.len() != 32 || !project.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Failure::Usage(format!("the project id {project:?} is not 32 hexadecimal characters")));
        }
        let ca_file = conn.ca_file.clone().or(profile.ca_file.take());
        Ok(Api::new(&endpoint, project, creds, ca_file.as_deref())?.with_signing(
            conn.signing,
            &conn.signing_region,
            &conn.signing_service,
        ))
    }

    /// Signs AK/SK requests with `signing` (V11 with `region` and `service`).
    pub fn with_signing(mut self, signing: Signing, region: &str, service: &str) -> Self {
        self.signing = (signing, region.to_owned(), service.to_owned());
        self
    }

    /// The connection to `endpoint` (http or https; for https the system's roots are trusted,
    /// and the CA certificates of `ca_file` when given).
    pub fn new(endpoint: &str, project: String, creds: Credentials, ca_file: Option<&Path>) -> Result<Api, Failure> {
        if !endpoint.contains("://") {
            return Err(Failure::Usage(format!(
                "--endpoint {endpoint:?} has no scheme: write http://{endpoint}",
                endpoint = super::output::escape(endpoint)
            )));
        }
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| Failure::Usage(format!("--endpoint {endpoint:?} is not a URL: {e}")))?;
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(Failure::Usage(format!("--endpoint {endpoint}: unsupported scheme {other:?}"))),
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(Failure::Usage(format!("--endpoint {endpoint} has no host"))),
        };
        let http = kafka_tasks_platform::tls::client_builder(ca_file)
            .map_err(|e| Failure::Usage(format!("{e:#} (--ca-file)")))?
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("kafka-tasks-cli/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry `X-Auth-Token` (which reqwest does not strip) to another
            // host, and a signed request's signature does not fit the new URL anyway.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Failure::Network(format!("cannot build the HTTP client: {e}")))?;
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let signing = (Signing::default(), String::new(), String::new());
        Ok(Api { endpoint, host, project, creds, http, signing })
    }

    /// `/v2/{project_id}/instances/{instance}` plus `rest`.
    pub fn instance_path(&self, instance: &str, rest: &str) -> String {
        format!("/v2/{}/instances/{instance}{rest}", self.project)
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        self.send("GET", path, query, None).await
    }

    /// [`Api::get`]'s answer read into `T`, the wire type the server writes it from.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, Failure> {
        answer_as(&self.get(path, query).await?, &format!("GET {path}"))
    }

    /// One request; answers refused with 429 are sent again after their `Retry-After` (a few
    /// times). A 2xx answer's body as JSON (`Null` when empty), else the DMS error.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let query = encode_query(query);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut attempt = 0;
        loop {
            let res = self.send_once(method, path, &query, &body).await?;
            let status = res.status().as_u16();
            let header = |n: &str| res.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let request_id = header("x-request-id");
            let retry_after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
            let text = res.text().await.map_err(|e| Failure::Network(format!("{method} {path}: {e}")))?;
            if status == 429 && attempt < RETRIES_ON_429 {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 30))).await;
                continue;
            }
            if (200..300).contains(&status) {
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text)
                    .map_err(|e| Failure::Network(format!("{method} {path}: the answer is not JSON: {e}")));
            }
            return Err(self.hinted(api_error(status, request_id, &text), method, path, &query).await);
        }
    }

    /// `f` with the hint the table has for it in this request's context (the key's shape, and
    /// what keeps a busy instance busy, looked up when that is the refusal).
    async fn hinted(&self, f: Failure, method: &str, path: &str, query: &str) -> Failure {
        let Failure::Api { status, code, message, request_id, hint: None } = f else { return f };
        let (op, instance, task) = request_context(method, path, query);
        let access_key = match &self.creds {
            Credentials::AkSk { access_key, .. } => access_key.as_str(),
            Credentials::Token(_) => "",
        };
        let facts = Facts { project: &self.project, instance, task, access_key };
        let mut found = hint(&code, &message, op, &facts);
        if let (Some(h), Credentials::AkSk { access_key, secret_key }) = (&mut found, &self.creds)
            && message.contains("verify aksk signature fail")
            && let Some(shape) = key_shape(access_key, secret_key)
        {
            h.push_str("; ");
            h.push_str(&shape);
        }
        if found.is_none() && code == "DMS.00400026" && op == Op::Operation {
            found = Box::pin(self.busy_hint(instance)).await;
        }
        Failure::Api { status, code, message, request_id, hint: found }
    }

    /// Why an instance refuses an operation: its status and the task running on it (none when
    /// either answer cannot be read).
    async fn busy_hint(&self, instance: &str) -> Option<String> {
        let inst: InstanceJson = self.get_as(&self.instance_path(instance, ""), &[]).await.ok()?;
        let status = inst.status;
        let tasks: TaskList =
            self.get_as(&self.instance_path(instance, "/tasks"), &[("limit", "100".into())]).await.ok()?;
        let running = tasks.tasks.iter().find(|t| matches!(&*t.status, "EXECUTING" | "CREATED"));
        Some(match running {
            Some(t) => format!(
                "the instance is {status}: task {} ({}) is {} on it; wait for it (`kafka-tasks tasks wait -i {instance} \
                 {}`), then try again",
                t.id, t.name, t.status, t.id
            ),
            None => format!("the instance is {status}, which does not allow this operation now"),
        })
    }

    /// Whether requests are signed with AK/SK (not sent with a token).
    pub fn signs(&self) -> bool {
        matches!(self.creds, Credentials::AkSk { .. })
    }

    /// `POST /v3/auth/tokens` with `body`: the answer and the token from `X-Subject-Token`.
    pub async fn create_token(&self, body: &Value) -> Result<(Value, String), Failure> {
        let path = "/v3/auth/tokens";
        let res = self.send_once("POST", path, "", &body.to_string()).await?;
        let status = res.status().as_u16();
        let header = |n: &str| res.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (request_id, token) = (header("x-request-id"), header("x-subject-token"));
        let text = res.text().await.map_err(|e| Failure::Network(format!("POST {path}: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, request_id, &text));
        }
        let token = token.ok_or_else(|| Failure::Network(format!("POST {path}: the answer has no X-Subject-Token")))?;
        Ok((serde_json::from_str(&text).unwrap_or(Value::Null), token))
    }

    /// A signed GET whose answer is a stream: the response as it starts, read by the caller,
    /// with `timeout` instead of the client's 30 s for the whole of it. An answer that is not
    /// 2xx is its DMS error (its body read up to 64 KiB: the server is not trusted to end it).
    pub async fn open_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<reqwest::Response, Failure> {
        let query = encode_query(query);
        let mut res = self
            .request("GET", path, &query, "")?
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| Failure::Network(format!("no answer from {} (GET {path}): {e}", self.endpoint)))?;
        let status = res.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(res);
        }
        let request_id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        while body.len() < 64 * 1024 {
            match tokio::time::timeout(Duration::from_secs(5), res.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        Err(self.hinted(api_error(status, request_id, &String::from_utf8_lossy(&body)), "GET", path, &query).await)
    }

    async fn send_once(&self, method: &str, path: &str, query: &str, body: &str) -> Result<reqwest::Response, Failure> {
        self.request(method, path, query, body)?.send().await.map_err(|e| {
            // reqwest's own message is generic ("error sending request"); the causes say why.
            let mut why = vec![];
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why.push(s.to_string());
                source = s.source();
            }
            let why = why.last().cloned().unwrap_or_else(|| e.to_string());
            if let Some(refused) = kafka_tasks_platform::tls::certificate_refused(&e) {
                return Failure::Network(format!(
                    "no answer from {} ({method} {path}): the server's certificate is not trusted ({refused}); \
                     if a private CA signed it, pass its certificate with --ca-file PATH (or KAFKA_TASKS_CA_FILE, \
                     or ca_file in the profile)",
                    self.endpoint
                ));
            }
            Failure::Network(format!("no answer from {} ({method} {path}): {why}", self.endpoint))
        })
    }

    /// A request signed (or carrying the token) as every call of the client is.
    fn request(&self, method: &str, path: &str, query: &str, body: &str) -> Result<reqwest::RequestBuilder, Failure> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| Failure::Usage(e.to_string()))?;
        let url = if query.is_empty() {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}{path}?{query}", self.endpoint)
        };
        let mut req = self
            .http
            .request(m, &url)
            .header("content-type", "application/json")
            .header("host", &self.host)
            .header("x-project-id", &self.project);
        match &self.creds {
            Credentials::AkSk { access_key, secret_key } => {
                let (mode, region, service) = &self.signing;
                let signer = Signer {
                    algorithm: mode.algorithm(),
                    access_key,
                    secret_key,
                    region_service: Some((region, service)),
                };
                let headers = [
                    ("content-type", "application/json"),
                    ("host", self.host.as_str()),
                    ("x-project-id", &self.project),
                ];
                let signed = signer.sign(method, path, query, &headers, body.as_bytes(), &sdk_date(now_ms()));
                req = req.header("x-sdk-date", signed.sdk_date).header("authorization", signed.authorization);
            }
            Credentials::Token(t) => req = req.header("x-auth-token", t),
        }
        Ok(req.body(body.to_owned()))
    }
}

fn profile_creds(p: &Profile, name: &str) -> Result<Credentials, Failure> {
    match (&p.access_key, &p.secret_key, &p.token) {
        (Some(ak), Some(sk), _) => Ok(Credentials::AkSk { access_key: ak.clone(), secret_key: sk.clone() }),
        (None, None, Some(t)) => Ok(Credentials::Token(t.clone())),
        _ => Err(Failure::Usage(format!("profile [{name}] needs access_key and secret_key, or token"))),
    }
}

/// `k=v&…` with the values percent-encoded as the signature's canonical form expects.
fn encode_query(pairs: &[(&str, String)]) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    pairs.iter().map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, SET))).collect::<Vec<_>>().join("&")
}

fn api_error(status: u16, header_id: Option<String>, text: &str) -> Failure {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let code = field("error_code").unwrap_or_else(|| format!("HTTP {status}"));
    let message = field("error_msg").unwrap_or_else(|| text.chars().take(200).collect());
    let request_id = header_id.or_else(|| field("request_id"));
    Failure::Api { status, code, message, request_id, hint: None }
}

/// The command a request stands for, as far as hints tell them apart, and the instance and
/// task its path names.
fn request_context<'a>(method: &str, path: &'a str, query: &str) -> (Op, &'a str, &'a str) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let after = |key: &str| parts.iter().position(|p| *p == key).and_then(|i| parts.get(i + 1).copied());
    let instance = after("instances").unwrap_or_default();
    let (sched, task) = match (after("scheduled-tasks"), after("tasks")) {
        (Some(t), _) => (true, t),
        (None, Some(t)) => (false, t),
        (None, None) => (false, ""),
    };
    let op = match (method, sched, task.is_empty()) {
        ("DELETE", true, false) => Op::ScheduledDelete,
        ("DELETE", false, false) => Op::TaskDelete,
        ("PUT", true, false) if query.contains("execute_at=") => Op::Reschedule,
        ("POST" | "PUT", _, true) if !instance.is_empty() => Op::Operation,
        _ => Op::Any,
    };
    (op, instance, task)
}

/// A 2xx answer (`what`: its request) read into `T`, the wire type the server writes it from
/// (the answer itself stays as it came, for `-o json`). An answer of another shape is unreadable
/// (exit 4), as one that is not JSON is: the client acts on no field it had to guess.
pub fn answer_as<T: DeserializeOwned>(answer: &Value, what: &str) -> Result<T, Failure> {
    T::deserialize(answer)
        .map_err(|e| Failure::Network(format!("{what}: the answer is not of the expected shape: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded_as_the_canonical_form_wants() {
        let q = encode_query(&[("execute_at", "20260101000000".into()), ("status", "a b/c".into())]);
        assert_eq!(q, "execute_at=20260101000000&status=a%20b%2Fc");
    }

    #[test]
    fn an_error_body_gives_code_message_and_request_id() {
        let f = api_error(404, None, r#"{"error_code":"DMS.00404070","error_msg":"no task","request_id":"r1"}"#);
        let Failure::Api { status, code, message, request_id, .. } = f else { panic!("not an API failure") };
        assert_eq!(
            (status, code.as_str(), message.as_str(), request_id.as_deref()),
            (404, "DMS.00404070", "no task", Some("r1"))
        );
    }

    #[test]
    fn https_is_spoken_and_a_bad_ca_file_is_a_usage_error() {
        let token = || Credentials::Token("t".into());
        assert!(Api::new("https://example.com", "p".into(), token(), None).is_ok());
        let missing = Api::new("https://example.com", "p".into(), token(), Some(Path::new("/nonexistent/ca.pem")));
        assert!(matches!(missing, Err(Failure::Usage(m)) if m.contains("cannot read the CA file")));
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = Api::new("https://example.com", "p".into(), token(), Some(&junk));
        assert!(matches!(&junk, Err(Failure::Usage(m)) if m.contains("holds no PEM certificate")), "{junk:?}");
    }
}
