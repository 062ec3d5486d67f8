//! `kafka-tasks configure`: writes a profile of the CLI's profiles file (mode 0600), as
//! `aws configure` does, from a credential file the server or `credentials create` wrote
//! (`--from data/initial-credential.json`) or from answers to prompts; and `token create`'s
//! client path, which asks the server for a token with the caller's AK/SK.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};

use super::http::{Api, Credentials, DEFAULT_ENDPOINT, Profile, profiles_path, read_profiles};
use super::{Conn, Failure, output};

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// The profile to write (`default` is the one used when no credentials are in the environment).
    #[arg(long, env = "KAFKA_TASKS_PROFILE", default_value = "default")]
    pub profile: String,
    /// Take the access key, secret key and project from this JSON file: the server's
    /// `data/initial-credential.json`, or what `credentials create` printed. Without it, asks.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// The service's base URL to store in the profile (asked for when not given and there is no `--from`).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The project to store (instead of the one in the `--from` file).
    #[arg(long)]
    pub project_id: Option<String>,
}

/// The secret as a profile shows it when asked to keep it: its last four characters.
fn masked(s: &str) -> String {
    let tail: String = s.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("****{tail}")
}

/// One answer from stdin (a prompt on stderr first); on a terminal, `secret` answers are not echoed.
fn ask(prompt: &str, current: Option<&str>, secret: bool) -> Result<Option<String>, Failure> {
    let shown = match (current, secret) {
        (Some(c), true) => format!(" [{}]", masked(c)),
        (Some(c), false) => format!(" [{}]", output::escape(c)),
        (None, _) => String::new(),
    };
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}{shown}: ");
    let _ = err.flush();
    let stdin = std::io::stdin();
    let _echo = (secret && stdin.is_terminal()).then(NoEcho::new).flatten();
    let mut line = String::new();
    let n = stdin.lock().read_line(&mut line).map_err(|e| Failure::Usage(format!("cannot read an answer: {e}")))?;
    if _echo.is_some() {
        let _ = writeln!(err);
    }
    if n == 0 {
        return Err(Failure::Usage(format!("no answer for {prompt:?} (end of input); nothing was written")));
    }
    let answer = line.trim();
    Ok(if answer.is_empty() { current.map(str::to_owned) } else { Some(answer.to_owned()) })
}

/// Terminal echo off while it lives (the secret key is typed unseen); restored on drop.
struct NoEcho(libc::termios);

impl NoEcho {
    #[allow(unsafe_code, reason = "termios(3), see the SAFETY note")]
    fn new() -> Option<NoEcho> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios this function owns; failures
        // (not a terminal) leave echo as it was.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            (libc::tcsetattr(0, libc::TCSANOW, &t) == 0).then_some(NoEcho(saved))
        }
    }
}

impl Drop for NoEcho {
    #[allow(unsafe_code, reason = "termios(3), see the SAFETY note")]
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `new` on the same descriptor.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}

fn check_project(p: &str) -> Result<(), Failure> {
    if p.len() != 32 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::Usage(format!("the project id {:?} is not 32 hexadecimal characters", output::escape(p))));
    }
    Ok(())
}

/// Writes `profiles` to `path` (mode 0600, its folder 0700), whole or not at all.
fn write_profiles(path: &Path, profiles: &BTreeMap<String, Profile>) -> Result<(), Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::Usage(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        kafka_tasks_platform::private_files::create_private_dir(dir).map_err(|e| failed(&e))?;
    }
    let text = toml::to_string(profiles).map_err(|e| failed(&e))?;
    let tmp = path.with_extension("toml.tmp");
    kafka_tasks_platform::private_files::write_private(&tmp, &text).map_err(|e| failed(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| failed(&e))
}

pub async fn configure(a: ConfigureArgs) -> Result<(), Failure> {
    let path = profiles_path().ok_or_else(|| Failure::Usage("no HOME to keep the profiles file in".into()))?;
    let mut all = if path.exists() { read_profiles(&path)? } else { BTreeMap::new() };
    let mut p = all.remove(&a.profile).unwrap_or_default();
    if let Some(from) = &a.from {
        let text = std::fs::read_to_string(from)
            .map_err(|e| Failure::Usage(format!("cannot read the credential file {}: {e}", from.display())))?;
        let c: kafka_tasks_wire::credential::IssuedCredential = serde_json::from_str(&text).map_err(|e| {
            Failure::Usage(format!(
                "{} is not a credential as the server or `credentials create` writes it: {e}",
                from.display()
            ))
        })?;
        p.access_key = Some(c.access_key);
        p.secret_key = Some(c.secret_key);
        p.project_id = Some(c.project_id);
        p.token = None;
        if let Some(e) = a.endpoint.clone() {
            p.endpoint = Some(e);
        }
        p.endpoint.get_or_insert_with(|| DEFAULT_ENDPOINT.to_owned());
    } else {
        if std::io::stdin().is_terminal() {
            eprintln!(
                "Profile [{}] in {} (Enter keeps the value in brackets; a server's first key is in its \
                 data/initial-credential.json: `kafka-tasks configure --from data/initial-credential.json`)",
                output::escape(&a.profile),
                path.display()
            );
        }
        let endpoint = a.endpoint.clone().or(p.endpoint.take()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        p.endpoint = ask("Endpoint", Some(&endpoint), false)?;
        let project = a.project_id.clone().or(p.project_id.take());
        p.project_id = ask("Project ID", project.as_deref(), false)?;
        let ak = p.access_key.take();
        p.access_key = ask("Access key ID (AK)", ak.as_deref(), false)?;
        let sk = p.secret_key.take();
        p.secret_key = ask("Secret access key (SK)", sk.as_deref(), true)?;
        p.token = None;
    }
    if let Some(project) = a.project_id {
        p.project_id = Some(project);
    }
    let (Some(endpoint), Some(project), Some(ak), Some(sk)) =
        (&p.endpoint, &p.project_id, &p.access_key, &p.secret_key)
    else {
        return Err(Failure::Usage("the endpoint, project id, access key and secret key are all needed".into()));
    };
    check_project(project)?;
    let endpoint = endpoint.clone();
    // The endpoint must be one the client can use (a URL with a scheme it speaks).
    let api = Api::new(
        &endpoint,
        project.clone(),
        Credentials::AkSk { access_key: ak.clone(), secret_key: sk.clone() },
        p.ca_file.as_deref(),
    )?;
    all.insert(a.profile.clone(), p);
    write_profiles(&path, &all)?;
    println!("profile [{}] written to {} (mode 0600)", output::escape(&a.profile), path.display());
    // A check a person wants at once: does the server take this key? Not fatal: the profile is
    // written either way (the server may simply be down now).
    match api.get(&format!("/v2/{}/instances", api.project), &[("limit", "1".into())]).await {
        Ok(_) => println!("checked: {} accepts this key", output::escape(&endpoint)),
        Err(e) => {
            eprintln!("warning: the profile is written, but the check failed: {}", output::escape(&e.to_string()))
        }
    }
    Ok(())
}

/// `token create` without `--access-key`: asks the server (`POST /v3/auth/tokens`) with the
/// caller's AK/SK and prints the token.
pub async fn token_from_server(conn: &Conn) -> Result<(), Failure> {
    let api = Api::from_conn(conn)?;
    if !api.signs() {
        return Err(Failure::Usage(
            "a token cannot request a token: give an access key and secret key (a profile, or \
             HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK)"
                .into(),
        ));
    }
    let body = json!({
        "auth": {
            "identity": { "methods": ["hw_ak_sk"] },
            "scope": { "project": { "id": api.project } },
        }
    });
    let (answer, token) = api.create_token(&body).await?;
    if conn.output == super::Output::Json {
        let mut answer = answer;
        if let Value::Object(m) = &mut answer {
            m.insert("x_subject_token".into(), json!(token));
        }
        println!("{}", output::json_text(&answer));
    } else {
        println!("{token}");
    }
    Ok(())
}
