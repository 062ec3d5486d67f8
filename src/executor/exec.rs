//! The `exec` executor: a program the operator names runs a step (or a whole task).
//!
//! The program and its arguments come from the executor file only; the task reaches it as data,
//! never in its command line: the task document ([`super::StepRun::document`]) on stdin, and
//! the same facts in `KT_*` environment variables. The environment is otherwise cleared (but
//! for `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR` and the file's own `env`), so that the
//! server's own settings (its master key, its database URL) never reach an executor.
//!
//! The program runs in a process group of its own: a timeout or the server's shutdown sends the
//! whole group SIGTERM, then SIGKILL after the grace period, and whatever the program left
//! running when it exited is killed with it. On Linux the program also dies with the server
//! (`PR_SET_PDEATHSIG`), so that a server killed outright leaves no step running on its own
//! while another process takes the task over.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::{Event, OUTPUT_TAIL, Outcome, REASON_TAIL, StepRun, Tail, parse_line};

/// The longest line read as a progress report; longer lines are only output.
const MAX_LINE: usize = 64 * 1024;

/// The longest `KT_PARAMS` / `KT_INSTANCE` passed in the environment (Linux refuses a single
/// variable over 128 KiB); a longer one is left out, and the program reads the document on stdin.
const MAX_ENV_VALUE: usize = 64 * 1024;

/// The environment variables an executor inherits from the server.
const PASSED_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The program runs once per step, told which step in `KT_STEP`.
    #[default]
    Step,
    /// The program runs once for the task (from the step it resumes at) and reports each step
    /// it moves on to as `{"step": "name"}`; its exit ends the remaining steps.
    Task,
}

#[derive(Debug)]
pub struct Spec {
    program: PathBuf,
    args: Vec<String>,
    pub mode: Mode,
    env: BTreeMap<String, String>,
    working_dir: Option<PathBuf>,
}

impl Spec {
    pub fn new(
        op: &str,
        program: PathBuf,
        args: Vec<String>,
        mode: Mode,
        env: BTreeMap<String, String>,
        working_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(program.is_absolute(), "{op}: program must be an absolute path, not {}", program.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta =
                std::fs::metadata(&program).map_err(|e| anyhow::anyhow!("{op}: program {}: {e}", program.display()))?;
            anyhow::ensure!(
                meta.is_file() && meta.permissions().mode() & 0o111 != 0,
                "{op}: program {} is not an executable file",
                program.display()
            );
        }
        for key in env.keys() {
            let valid = !key.is_empty()
                && !key.starts_with(|c: char| c.is_ascii_digit())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            anyhow::ensure!(valid, "{op}: {key:?} is not an environment variable name");
            anyhow::ensure!(!key.starts_with("KT_"), "{op}: KT_* variables are set by kafka-tasks ({key})");
        }
        Ok(Spec { program, args, mode, env, working_dir })
    }
}

/// Runs the program for `req` until it exits or `stop` turns true.
pub async fn run(
    spec: &Spec,
    req: &StepRun<'_>,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let doc = req.document();
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args).env_clear();
    for key in PASSED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(&spec.env)
        .env("KT_TASK_ID", req.task.id.as_str())
        .env("KT_INSTANCE_ID", req.task.instance_id.as_str())
        .env("KT_PROJECT_ID", req.task.project_id.as_str())
        .env("KT_OPERATION", req.operation)
        .env("KT_STEP", req.step_name)
        .env("KT_STEP_INDEX", req.step.to_string())
        .env("KT_ATTEMPT", req.attempt.to_string());
    let instance = req.instance.to_string();
    if instance.len() <= MAX_ENV_VALUE {
        cmd.env("KT_INSTANCE", instance);
    }
    if req.task.params.len() <= MAX_ENV_VALUE {
        cmd.env("KT_PARAMS", &req.task.params);
    }
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the child between fork and exec; it only makes one prctl
    // system call, which allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Failed {
                reason: format!("cannot start {}: {e}", spec.program.display()),
                tail: String::new(),
            };
        }
    };
    let mut group = Group(child.id());
    if let Some(mut stdin) = child.stdin.take() {
        let body = doc.to_string().into_bytes();
        // A program that does not read its stdin closes the pipe: that is not an error.
        tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
            let _ = stdin.write_all(b"\n").await;
        });
    }
    let output = Arc::new(Mutex::new(Tail::new(OUTPUT_TAIL)));
    let stderr_tail = Arc::new(Mutex::new(Tail::new(REASON_TAIL)));
    let mut readers = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout.take() {
        let (output, events) = (output.clone(), events.clone());
        readers.spawn(read_lines(
            out,
            move |line, whole| {
                push(&output, line);
                if whole { parse_line(&String::from_utf8_lossy(line)) } else { Vec::new() }
            },
            events,
        ));
    }
    if let Some(err) = child.stderr.take() {
        let (output, stderr_tail) = (output.clone(), stderr_tail.clone());
        readers.spawn(read_lines(
            err,
            move |line, _| {
                push(&output, line);
                push(&stderr_tail, line);
                Vec::new()
            },
            events,
        ));
    }
    let status = tokio::select! {
        status = child.wait() => Some(status),
        _ = crate::executor::stopped(&mut stop) => None,
    };
    let status = match status {
        Some(s) => s,
        None => {
            group.signal(rustix::process::Signal::TERM);
            if tokio::time::timeout(req.kill_grace, child.wait()).await.is_err() {
                group.signal(rustix::process::Signal::KILL);
                let _ = child.wait().await;
            }
            group.signal(rustix::process::Signal::KILL);
            group.0 = None;
            finish_reading(readers).await;
            return Outcome::Stopped { tail: text(&output) };
        }
    };
    // Whatever the program left running goes with it (it may hold the output pipes open).
    group.signal(rustix::process::Signal::KILL);
    // Signalled for the last time: once its members are gone, the group's id may be reused.
    group.0 = None;
    finish_reading(readers).await;
    let tail = text(&output);
    match status {
        Ok(s) if s.success() => Outcome::Done { tail },
        Ok(s) => {
            let err = text(&stderr_tail);
            let err = err.trim();
            let how = match (s.code(), signal_of(&s)) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                (None, None) => "failed".to_owned(),
            };
            let reason = if err.is_empty() { how } else { format!("{how}: {err}") };
            Outcome::Failed { reason, tail }
        }
        Err(e) => Outcome::Failed { reason: format!("lost the program: {e}"), tail },
    }
}

#[cfg(unix)]
fn signal_of(s: &std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(s)
}

#[cfg(not(unix))]
fn signal_of(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// The program's process group.
struct Group(Option<u32>);

impl Group {
    fn signal(&self, sig: rustix::process::Signal) {
        let pid = self.0.and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // ESRCH: the group is gone already.
            let _ = rustix::process::kill_process_group(pid, sig);
        }
    }
}

impl Drop for Group {
    /// An abandoned run (its future dropped) leaves nothing running.
    fn drop(&mut self) {
        self.signal(rustix::process::Signal::KILL);
    }
}

fn push(tail: &Mutex<Tail>, bytes: &[u8]) {
    if let Ok(mut t) = tail.lock() {
        t.push(bytes);
    }
}

fn text(tail: &Mutex<Tail>) -> String {
    tail.lock().map(|t| t.text()).unwrap_or_default()
}

/// Waits briefly for the output readers to drain what the program wrote.
async fn finish_reading(mut readers: tokio::task::JoinSet<()>) {
    let drained =
        tokio::time::timeout(std::time::Duration::from_secs(2), async { while readers.join_next().await.is_some() {} });
    if drained.await.is_err() {
        readers.abort_all();
    }
}

/// Reads `r` line by line (a line at most [`MAX_LINE`] bytes; a longer one is passed on in
/// pieces, marked not whole) and sends the events `on_line` finds.
async fn read_lines<R, F>(r: R, mut on_line: F, events: mpsc::Sender<Event>)
where
    R: AsyncRead + Unpin,
    F: FnMut(&[u8], bool) -> Vec<Event>,
{
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    let mut continued = false;
    loop {
        buf.clear();
        match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let ended = buf.ends_with(b"\n");
        let whole = !continued && (ended || buf.len() < MAX_LINE);
        continued = !ended && buf.len() >= MAX_LINE;
        for e in on_line(&buf, whole) {
            if events.send(e).await.is_err() {
                return;
            }
        }
    }
}
