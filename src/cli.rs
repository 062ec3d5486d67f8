//! The command line: one binary, subcommands. Each subcommand is a thin call into the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::auth;
use crate::config::{DatabaseArgs, KeyArgs, ServeArgs};
use crate::domain::Timestamp;
use crate::domain::{CompactTime, ProjectId, Role, now_ms};
use crate::storage::Storage;

#[derive(Debug, Parser)]
#[command(name = "kafka-tasks", version, about = "Background-task service for Kafka instances (DMS-compatible API)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server and the task engine.
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage access keys (AK/SK).
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Issue tokens for `X-Auth-Token`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Read the audit log of mutating requests.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage kernel builds: the patch builds of each engine version that instances upgrade to.
    #[command(subcommand)]
    Kernels(KernelsCommand),
    /// The API from the command line (tasks, scheduled, instances, configs, operations).
    #[command(flatten)]
    Client(crate::client::ClientCommand),
    /// Print a shell completion script: `source <(kafka-tasks completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum KernelsCommand {
    /// Add a kernel build to an engine version. It becomes that version's latest build: new
    /// instances run it, and existing ones can be upgraded to it (UpgradeInstance).
    Add {
        /// `2.7` or `3.x`.
        #[arg(long)]
        engine_version: String,
        /// The build's name, e.g. `2.7.1-h0.cbu.dms.102.r0`: letters, digits, `.`, `-`, `_`.
        #[arg(long)]
        build: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Print each engine version's kernel builds, oldest first (the last is the latest), as JSON.
    List {
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Create an access key; prints it as JSON, the only time the secret key is shown.
    Create {
        #[arg(long)]
        project_id: String,
        #[arg(long)]
        user_name: String,
        /// admin (everything), operator (tasks and operations), readonly (reads).
        #[arg(long, default_value = "operator")]
        role: String,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// List access keys, one JSON object a line (never the secrets).
    List {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke an access key; its signatures and tokens stop working at once.
    Revoke {
        access_key: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a token valid for 24 hours. Without `--access-key`: asks the server with your AK/SK
    /// (a profile, or HUAWEICLOUD_SDK_AK/SK), as any client does. With `--access-key`: the
    /// operator's path, on the server's own database and master key (never created here).
    Create {
        /// Issue the token on the database directly, for this access key (run where the server runs).
        #[arg(long)]
        access_key: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        conn: crate::client::Conn,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print audit events, oldest first, one JSON object a line.
    List {
        #[arg(long)]
        project_id: Option<String>,
        /// Only events at or after this time: `YYYYMMDDHHmmss` (UTC) or epoch milliseconds.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u64,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

fn parse_project(s: &str) -> anyhow::Result<ProjectId> {
    s.parse().map_err(|_| anyhow::anyhow!("--project-id must be 32 hexadecimal characters"))
}

async fn credentials(cmd: CredentialsCommand) -> anyhow::Result<()> {
    match cmd {
        CredentialsCommand::Create { project_id, user_name, role, db, keys } => {
            let project = parse_project(&project_id)?;
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            if user_name.is_empty() || user_name.len() > 64 {
                anyhow::bail!("--user-name must have 1 to 64 characters");
            }
            let storage = Storage::open(&db.database).await?;
            let master = keys.open(&storage, Timestamp::now()).await?;
            let created = auth::create_credential(
                storage.credentials.as_ref(),
                &master,
                &project,
                &user_name,
                role,
                now_ms(),
                false,
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("the credential was not created"))?;
            let detail =
                serde_json::json!({ "user_id": created.user_id, "user_name": created.user_name, "role": created.role });
            let audited = operator_audit(
                &storage,
                "kafka:credentials:create",
                &created.access_key,
                &project_id,
                201,
                Some(detail),
            )
            .await;
            if let Err(e) = audited {
                // An unaudited key must not stay usable; its secret was never shown.
                storage.credentials.revoke_credential(&created.access_key, Timestamp::now()).await?;
                return Err(e.context(format!("the key {} was revoked at once", created.access_key)));
            }
            println!("{}", serde_json::to_string(&created)?);
        }
        CredentialsCommand::List { db } => {
            let storage = Storage::open(&db.database).await?;
            for c in storage.credentials.list_credentials().await? {
                let line = serde_json::json!({
                    "access_key": c.access_key, "project_id": c.project_id, "user_id": c.user_id,
                    "user_name": c.user_name, "role": c.role, "created_at": crate::domain::time::iso_ms(c.created_at),
                    "revoked": c.revoked_at.is_some(),
                });
                println!("{}", crate::client::output::inert_json(line.to_string()));
            }
        }
        CredentialsCommand::Revoke { access_key, db } => {
            let storage = Storage::open(&db.database).await?;
            let project = storage.credentials.get_credential(&access_key).await?.map(|c| c.project_id);
            let project = project.as_ref().map_or("", |p| p.as_str());
            let revoked = storage.credentials.revoke_credential(&access_key, Timestamp::now()).await?;
            let status = if revoked { 204 } else { 404 };
            operator_audit(&storage, "kafka:credentials:revoke", &access_key, project, status, None).await?;
            if !revoked {
                anyhow::bail!("no active access key {access_key}");
            }
            println!("revoked {access_key}");
        }
    }
    Ok(())
}

/// Audits a change made from the command line. The actor is the local operator: user id
/// `cli`, the login name as user name (`$USER`, else `cli`), no access key. Never a secret.
async fn operator_audit(
    storage: &Storage,
    action: &str,
    target: &str,
    project: &str,
    status: u16,
    detail: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let login = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    let user_name = if login.is_empty() || login.len() > 64 { "cli".to_owned() } else { login };
    let event = crate::storage::AuditEvent {
        at: now_ms(),
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        project_id: project.to_owned(),
        user_id: "cli".to_owned(),
        user_name,
        access_key: None,
        action: action.to_owned(),
        target: target.to_owned(),
        status,
        detail,
    };
    storage.audit.append_audit(event).await.map_err(|e| anyhow::anyhow!("could not write the audit event: {e}"))
}

/// Adds a kernel build to an engine version (the `kernels add` command): checked against the
/// catalog ([`crate::domain::kernel::Catalog::check_new`]), stored, audited.
pub async fn add_kernel_build(storage: &Storage, engine_version: &str, build: &str) -> anyhow::Result<()> {
    let catalog = storage.kernel_catalog(engine_version).await?.ok_or_else(|| {
        let known: Vec<&str> = crate::domain::kernel::BUILT_IN.iter().map(|(v, _)| *v).collect();
        anyhow::anyhow!("unknown --engine-version {engine_version:?} (expected one of {})", known.join(", "))
    })?;
    catalog.check_new(build).map_err(|e| anyhow::anyhow!("--build: {e}"))?;
    let added = storage.kernels.add_kernel_build(engine_version, build, Timestamp::now()).await?;
    let status = if added { 201 } else { 409 };
    let detail = serde_json::json!({ "engine_version": engine_version });
    operator_audit(storage, "kafka:kernels:add", build, "", status, Some(detail)).await?;
    if !added {
        anyhow::bail!("{build} is already a build of {engine_version}");
    }
    Ok(())
}

async fn kernels(cmd: KernelsCommand) -> anyhow::Result<()> {
    match cmd {
        KernelsCommand::Add { engine_version, build, db } => {
            let storage = Storage::open(&db.database).await?;
            add_kernel_build(&storage, &engine_version, &build).await?;
            println!("added {build} to {engine_version}; it is now the latest build");
        }
        KernelsCommand::List { db } => {
            let storage = Storage::open(&db.database).await?;
            for (version, _) in crate::domain::kernel::BUILT_IN {
                if let Some(c) = storage.kernel_catalog(version).await? {
                    let line = serde_json::json!({
                        "engine_version": version, "builds": c.builds(), "latest": c.latest(),
                    });
                    println!("{line}");
                }
            }
        }
    }
    Ok(())
}

/// Refuses to go on when the database or the master key file that `token create --access-key`
/// would read does not exist: opening them would create an empty database or a new key, and
/// the token would be refused by the server anyway. Says which path it looked for.
fn require_existing(db: &DatabaseArgs, keys: &KeyArgs) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let url = db.database.as_str();
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        let path = std::path::Path::new(url.strip_prefix("sqlite:").unwrap_or(url));
        if !path.exists() {
            anyhow::bail!(
                "no database at {} (looked in {cwd}): run this where the server runs, pass its --database, \
                 or leave out --access-key to ask the server with your AK/SK (`kafka-tasks configure` first)",
                path.display()
            );
        }
    }
    if keys.master_key.is_none() && !keys.master_key_file.exists() {
        anyhow::bail!(
            "no master key file at {} (looked in {cwd}): pass the server's --master-key-file, \
             or leave out --access-key to ask the server with your AK/SK",
            keys.master_key_file.display()
        );
    }
    Ok(())
}

async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create { access_key, db, keys, conn: _ } = cmd;
    let Some(access_key) = access_key else {
        anyhow::bail!("unreachable: the client path is dispatched before");
    };
    require_existing(&db, &keys)?;
    let storage = Storage::open(&db.database).await?;
    let master = keys.open(&storage, Timestamp::now()).await?;
    let (token, _) = auth::issue_token(storage.credentials.as_ref(), &master, &access_key, now_ms())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{token}");
    Ok(())
}

async fn audit(cmd: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List { project_id, since, limit, db } = cmd;
    let project = project_id.as_deref().map(parse_project).transpose()?;
    let since = match since {
        None => None,
        Some(s) if s.len() == 14 => {
            Some(s.parse::<CompactTime>().map_err(|_| anyhow::anyhow!("--since: not a YYYYMMDDHHmmss time"))?.0)
        }
        Some(s) => Some(s.parse::<i64>().map_err(|_| anyhow::anyhow!("--since: YYYYMMDDHHmmss or epoch ms"))?),
    };
    let storage = Storage::open(&db.database).await?;
    for e in storage.audit.list_audit(project.as_ref(), since, limit).await? {
        let mut v = serde_json::to_value(&e)?;
        v["at"] = serde_json::json!(crate::domain::time::iso_ms(e.at));
        // Audited values were written by API callers: nothing in them may act on a terminal.
        println!("{}", crate::client::output::inert_json(v.to_string()));
    }
    Ok(())
}

/// The completion script for `shell`. Bash's is generated for the name `kafka_tasks` and bound
/// to `kafka-tasks`: clap_complete's bash generator spells a hyphenated name one way in the
/// loop that walks the words (`kafka__tasks__subcmd__tasks`) and another in the arms that
/// complete them (`kafka__subcmd__tasks__subcmd__tasks`), so nothing completed past the first
/// word (an upstream clap_complete bug: github.com/clap-rs/clap/issues/6421). Without a hyphen both agree; the function reads
/// the command as typed (`$1`), so only the `complete` lines name the binary.
pub fn completion_script(shell: clap_complete::Shell) -> String {
    const NAME: &str = "kafka-tasks";
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    if shell == clap_complete::Shell::Bash {
        clap_complete::generate(shell, &mut cmd, "kafka_tasks", &mut out);
        let text = String::from_utf8_lossy(&out);
        text.lines()
            .map(|l| match l.trim_start().starts_with("complete -F ") {
                true => l.strip_suffix(" kafka_tasks").map_or_else(|| l.to_owned(), |head| format!("{head} {NAME}")),
                false => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    } else {
        clap_complete::generate(shell, &mut cmd, NAME, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAFKA_TASKS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .fmt_fields(crate::log_json::SpanFields)
            .event_format(crate::log_json::JsonLine::default())
            .try_init()
    } else {
        builder.try_init()
    };
}

pub fn run(cli: Cli) -> ExitCode {
    if matches!(cli.command, Command::Client(_) | Command::Completions { .. }) {
        crate::client::default_sigpipe();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::Client(cmd) => return runtime.block_on(crate::client::run(cmd)),
        Command::Token(TokenCommand::Create { access_key: None, conn, .. }) => {
            crate::client::default_sigpipe();
            return runtime.block_on(crate::client::run_with(crate::client::configure::token_from_server(&conn)));
        }
        Command::Completions { shell } => {
            use std::io::Write;
            let script = completion_script(shell);
            return match std::io::stdout().write_all(script.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the script: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        other => other,
    };
    let result = runtime.block_on(async {
        match command {
            Command::Serve(args) => {
                init_logging(&args.log_format);
                let running = crate::server::start(&args).await?;
                crate::server::shutdown_signal().await;
                tracing::info!("shutting down");
                running.stop().await
            }
            Command::Credentials(cmd) => {
                init_logging("text");
                credentials(cmd).await
            }
            Command::Token(cmd) => {
                init_logging("text");
                token(cmd).await
            }
            Command::Audit(cmd) => {
                init_logging("text");
                audit(cmd).await
            }
            Command::Kernels(cmd) => {
                init_logging("text");
                kernels(cmd).await
            }
            Command::Migrate(db) => {
                init_logging("auto");
                crate::storage::Storage::open(&db.database).await?;
                println!("migrations applied to {}", crate::server::redact(&db.database));
                Ok(())
            }
            Command::Client(_) | Command::Completions { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::client::output::escape(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
