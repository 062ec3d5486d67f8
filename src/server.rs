//! Starting and stopping the service: storage, engine and HTTP server together.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use std::path::Path;

use crate::auth::keys::{MasterKey, create_private_dir, write_private};
use crate::auth::{self, Authenticator, Clock};
use crate::config::ServeArgs;
use crate::domain::operation::StepContext;
use crate::domain::{ProjectId, Role};
use crate::engine::{Engine, EngineConfig};
use crate::http::{self, AppState};
use crate::storage::Storage;

/// The process-wide Prometheus recorder (metrics has one global recorder).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// A started service.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    engine: JoinHandle<()>,
}

/// Opens the database, starts the engine and binds the listener.
pub async fn start(args: &ServeArgs) -> anyhow::Result<Running> {
    start_with_clock(args, Clock::default()).await
}

/// As [`start`], with a clock that tests can move.
pub async fn start_with_clock(args: &ServeArgs, clock: Clock) -> anyhow::Result<Running> {
    let storage = Storage::open_with_pool(&args.db.database, args.pool_size as usize).await?;
    let master = args.keys.open(&storage, clock.now_ms()).await?;
    let default_project: ProjectId = args
        .default_project_id
        .parse()
        .map_err(|_| anyhow::anyhow!("--default-project-id must be 32 hexadecimal characters"))?;
    bootstrap_credential(&storage, &master, &default_project, &args.keys.master_key_file, clock.now_ms()).await?;
    let auth = Authenticator::with_args(storage.credentials.clone(), master, clock, &args.auth);
    let step_context = StepContext { storage_pool_gb: args.storage_pool_gb };
    let wake = Arc::new(Notify::new());
    let state = AppState {
        storage: storage.clone(),
        auth: Arc::new(auth),
        engine_wake: wake.clone(),
        time_scale: args.time_scale,
        step_context,
        metrics: Some(metrics_handle()),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let engine = Engine::new(
        storage.engine.clone(),
        EngineConfig {
            lease_ms: args.lease_ms,
            poll_ms: args.poll_ms,
            max_in_flight: args.max_in_flight as usize,
            step_context,
        },
        wake,
    );
    let engine = tokio::spawn(engine.run(shutdown_rx.clone()));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let mut server_stop = shutdown_rx;
    let app = http::router(state);
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(%addr, database = %redact(&args.db.database), "listening");
    Ok(Running { addr, shutdown, server, engine })
}

/// On a database with no credential at all, creates an admin key for the default project. Its
/// secret goes to `initial-credential.json` (mode 0600) beside the master key file, and to the
/// terminal only when stdout is one: never into a captured stdout (journald, docker logs). The
/// log says where the file is.
async fn bootstrap_credential(
    storage: &Storage,
    master: &MasterKey,
    project: &ProjectId,
    key_file: &Path,
    now: i64,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let created =
        auth::create_credential(storage.credentials.as_ref(), master, project, "admin", Role::Admin, now, true).await?;
    if let Some(cred) = created {
        let json = serde_json::to_string_pretty(&cred)?;
        let dir = key_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        let path = dir.join("initial-credential.json");
        write_private(&path, &json)?;
        let shown = std::io::stdout().is_terminal();
        if shown {
            println!("{json}");
        }
        tracing::info!(
            access_key = %cred.access_key,
            file = %path.display(),
            printed = shown,
            "created the first admin credential; its secret key is in the file (mode 0600)"
        );
    }
    Ok(())
}

/// The database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &creds[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish, stops the engine.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await??;
        self.engine.await?;
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite:data/x.db"), "sqlite:data/x.db");
    }
}
