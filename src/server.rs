//! Starting and stopping the service: storage, engine and HTTP server together.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use std::path::Path;

use crate::auth::keys::MasterKey;
use crate::auth::{self, Authenticator, Clock};
use crate::config::ServeArgs;
use crate::domain::operation::StepContext;
use crate::domain::{ProjectId, Role};
use crate::engine::{Engine, EngineConfig};
use crate::executor::Executors;
use crate::http::{self, AppState, serve};
use crate::private_files::{create_private_dir, write_private};
use crate::storage::Storage;
use crate::telemetry;

/// The process-wide Prometheus recorder (see [`crate::telemetry`]), with the memory trimmer
/// that started with it.
fn metrics_handle() -> PrometheusHandle {
    static TRIMMER: OnceLock<()> = OnceLock::new();
    TRIMMER.get_or_init(start_memory_trimmer);
    telemetry::handle()
}

/// How often freed heap memory is handed back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// glibc keeps the memory of a burst (a few thousand request bodies) in its arenas after it is
/// freed, and raises its mmap threshold after the first large free, so RSS stayed near its peak
/// for good. `malloc_trim` returns free pages of every arena to the system; run every
/// [`TRIM_EVERY`] it costs well under a millisecond on an idle heap. (mimalloc was measured as
/// the alternative and kept more, see docs/decisions.md.)
#[allow(unsafe_code, reason = "malloc_trim, see the SAFETY note")]
fn start_memory_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("malloc-trim".into()).spawn(|| {
            loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim takes no pointers and only walks glibc's own arenas under
                // their locks; it is safe to call from any thread at any time.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the memory trimmer");
        }
    }
}

/// A started service.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `GET /metrics` is served when `--metrics-listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    metrics_server: Option<JoinHandle<()>>,
    engine: JoinHandle<()>,
    pruner: JoinHandle<()>,
}

/// Opens the database, starts the engine and binds the listener.
pub async fn start(args: &ServeArgs) -> anyhow::Result<Running> {
    start_with_clock(args, Clock::default()).await
}

/// As [`start`], with a clock that tests can move.
pub async fn start_with_clock(args: &ServeArgs, clock: Clock) -> anyhow::Result<Running> {
    let pruner = args.retention.pruner()?;
    if args.test_control {
        crate::control::database_allowed(&args.db.database).map_err(|e| anyhow::anyhow!(e))?;
    }
    // The certificate is read before anything is opened or created, like the port below.
    let tls = match (&args.net.tls_cert, &args.net.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::ServerCert::load(cert, key)?),
        _ => None,
    };
    // Bound before anything is opened or created: a port already taken must leave no database,
    // key or `data/` folder behind.
    let listener = serve::bind(args.listen).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot listen on {}: the address is already in use (another kafka-tasks, or another program); \
             stop it or choose another address with --listen ADDR; nothing was created",
            args.listen
        ),
        _ => anyhow::anyhow!("cannot listen on {} (--listen): {e}", args.listen),
    })?;
    let storage = Storage::open_with_pool(&args.db.database, args.pool_size as usize).await?;
    let master = args.keys.open(&storage, clock.now()).await?;
    let default_project: ProjectId = args
        .default_project_id
        .parse()
        .map_err(|_| anyhow::anyhow!("--default-project-id must be 32 hexadecimal characters"))?;
    bootstrap_credential(&storage, &master, &default_project, &args.keys.master_key_file, clock.now_ms()).await?;
    let auth = Authenticator::with_args(storage.credentials.clone(), master, clock.clone(), &args.auth);
    let executors = Arc::new(match &args.executors {
        Some(path) => Executors::load(path)?,
        None => Executors::simulate_all(),
    });
    for (op, kind) in executors.describe() {
        tracing::info!(operation = op, executor = kind, "operation run by an executor");
    }
    let step_context = StepContext {
        storage_pool_gb: args.storage_pool_gb,
        executed: executors.executed(),
        stepwise: args.test_control,
    };
    let wake = Arc::new(Notify::new());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let control = match args.test_control {
        true => {
            let control = crate::control::TestControl::open(storage.clone(), clock.clone(), wake.clone()).await?;
            tokio::spawn(control.clone().refresh_forever(shutdown_rx.clone()));
            tracing::warn!(
                database = %redact(&args.db.database),
                clock = %serde_json::to_string(&control.clock_json()).unwrap_or_default(),
                "TEST CONTROL IS ON (--test-control): any admin of this server can inject faults, move the clock \
                 and reset the whole database through /v2/{{project_id}}/test-control/; never run it like this \
                 in production"
            );
            Some(control)
        }
        false => None,
    };
    let state = AppState {
        control: control.clone(),
        storage: storage.clone(),
        auth: Arc::new(auth),
        clock: clock.clone(),
        engine_wake: wake.clone(),
        time_scale: args.time_scale,
        step_context,
        metrics: (args.net.metrics_listen == serve::MetricsListen::Api).then(metrics_handle),
        body_guard: Arc::new(http::BodyGuard::new(&args.net)),
        readiness: Arc::default(),
        events: Arc::new(http::events::Streams::new(&args.events, shutdown_rx.clone())),
        retention_defaults: Arc::new(pruner.defaults.clone()),
        cluster_policy: Arc::new(args.clusters.policy()),
        cluster_health: Arc::default(),
    };
    tokio::spawn(http::events::prune_forever(
        storage.events.clone(),
        clock.clone(),
        args.events.clone(),
        shutdown_rx.clone(),
    ));
    let engine = Engine::new(
        storage.engine.clone(),
        EngineConfig {
            // Clap keeps it in 200..=3_600_000.
            lease: std::time::Duration::from_millis(args.lease_ms.unsigned_abs()),
            poll_ms: args.poll_ms,
            max_in_flight: args.max_in_flight as usize,
            step_context,
            clock: clock.clone(),
        },
        wake,
    )
    .with_executors(executors, storage.runs.clone(), storage.instances.clone())
    .with_clusters(storage.clusters.clone(), state.auth.master().clone(), state.cluster_policy.clone());
    let engine = match control {
        Some(c) => engine.with_test_control(c),
        None => engine,
    };
    let engine = tokio::spawn(engine.run(shutdown_rx.clone()));
    let pruner = crate::engine::retention::Pruner::new(storage.retention.clone(), pruner, clock.clone());
    let pruner = tokio::spawn(pruner.run(shutdown_rx.clone()));
    // The recorder is installed whether or not /metrics is served here.
    let _ = metrics_handle();
    telemetry::build_info(&args.db.database);
    let sample_every = Duration::from_millis(args.store_sample_ms);
    tokio::spawn(crate::engine::sampler::sample_forever(
        storage.clone(),
        clock.clone(),
        sample_every,
        shutdown_rx.clone(),
    ));
    let mut opts = args.net.serve_options();
    opts.max_connections = serve::fit_connection_cap(opts.max_connections);
    let metrics_listener = match args.net.metrics_listen {
        serve::MetricsListen::At(at) => match serve::bind(at) {
            Ok(l) => Some(l),
            Err(e) if args.net.metrics_listen.is_default() && e.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::warn!(
                    addr = %at,
                    "metrics not served: the default metrics address is in use (another server on this host?); \
                     choose one with --metrics-listen ADDR, or 'api' or 'off'"
                );
                None
            }
            Err(e) => return Err(anyhow::anyhow!("cannot serve metrics on {at} (--metrics-listen): {e}")),
        },
        serve::MetricsListen::Api | serve::MetricsListen::Off => None,
    };
    let (metrics_addr, metrics_server) = match metrics_listener {
        Some(listener) => {
            let bound = listener.local_addr()?;
            let app = http::health::metrics_router(metrics_handle());
            let stop = shutdown_rx.clone();
            let small = serve::ServeOptions { max_connections: 64, ..opts };
            tracing::info!(addr = %bound, "serving metrics");
            (Some(bound), Some(tokio::spawn(serve::serve(listener, app, small, None, stop))))
        }
        None => (None, None),
    };
    let addr = listener.local_addr()?;
    let app = http::router(state);
    let acceptor = match &tls {
        Some(cert) => {
            // Registered before "listening" is logged: a SIGHUP from then on reloads, never
            // meets the default action (which ends the process).
            let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| anyhow::anyhow!("cannot listen for SIGHUP (TLS certificate reloads): {e}"))?;
            tokio::spawn(reload_on_sighup(cert.clone(), hup, shutdown_rx.clone()));
            Some(cert.acceptor()?)
        }
        None => None,
    };
    let server = tokio::spawn(serve::serve(listener, app, opts, acceptor, shutdown_rx));
    tracing::info!(%addr, tls = tls.is_some(), database = %redact(&args.db.database), max_connections = opts.max_connections, "listening");
    Ok(Running { addr, metrics_addr, shutdown, server, metrics_server, engine, pruner })
}

/// Reads the server's certificate and key again on each SIGHUP; a bad new pair keeps the old
/// one, and the log says why.
async fn reload_on_sighup(
    cert: Arc<crate::tls::ServerCert>,
    mut hup: tokio::signal::unix::Signal,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            got = hup.recv() => if got.is_none() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        match cert.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "SIGHUP: TLS certificate not reloaded; the old one stays")
            }
        }
    }
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
    /// Stops accepting connections, lets in-flight requests finish (within the grace period),
    /// stops the engine.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await?;
        if let Some(m) = self.metrics_server {
            m.await?;
        }
        self.engine.await?;
        self.pruner.await?;
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
