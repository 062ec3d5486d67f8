//! `kafka-tasks-bench`: seeds a population straight into a fresh store, starts the server (as its
//! own process, so that its CPU and memory are its own), drives it over loopback with signed
//! requests on keep-alive connections, and prints throughput and latency percentiles per
//! operation, each against `GET /healthz` on the same server.

mod events;
mod instructions;
mod load;
mod prune;
mod reset;
mod seed;
mod thread_io;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use kafka_tasks::auth::keys::MasterKey;
use kafka_tasks::domain::{CompactTime, ProjectId, Role, now_ms};
use kafka_tasks::storage::Storage;
use load::{Call, CallMaker, Measured, Target};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The `kafka-tasks` binary to measure (default: the one beside this program, as cargo builds
    /// them: `cargo build --release -p kafka-tasks -p kafka-tasks-bench`).
    #[arg(long, env = "KAFKA_TASKS_BIN")]
    pub server_bin: Option<PathBuf>,
    /// Storage engine to measure: `sqlite` (a fresh file) or `postgres` (a fresh database on `--pg-server`).
    #[arg(long, default_value = "sqlite")]
    pub engine: String,
    /// PostgreSQL server for `--engine postgres`; the bench creates and drops its own database there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub pg_server: String,
    /// Tasks in the one large instance.
    #[arg(long, default_value_t = 100_000)]
    pub hot_tasks: usize,
    /// Other instances …
    #[arg(long, default_value_t = 1_000)]
    pub instances: usize,
    /// … with this many tasks each.
    #[arg(long, default_value_t = 1_000)]
    pub tasks_per_instance: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds each operation is driven.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// A small population and one second per operation: proves the command works, measures nothing.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Keep the seeded database (its location is printed).
    #[arg(long)]
    pub keep: bool,
    /// Tasks queued for the drain measurement (the server restarts onto them).
    #[arg(long, default_value_t = 20_000)]
    pub drain_tasks: usize,
    /// Operations timed from their commit to their event on a task event stream (0: skip).
    #[arg(long, default_value_t = 500)]
    pub event_samples: usize,
    /// Only measure event delivery (with a small population): `bench --events-only`.
    #[arg(long)]
    pub events_only: bool,
    /// Also run graphile-worker's no-op jobs on the same PostgreSQL (`bench/graphile-worker`,
    /// after `npm ci --prefix bench/graphile-worker`); with `--engine postgres` only.
    #[arg(long)]
    pub peer: bool,
    /// Measure what pruning costs the API instead (see docs): p50/p99 of show, list and delete
    /// idle, then while a retention policy prunes `--prune-instances` × `--prune-tasks-per-instance`
    /// records of another project.
    #[arg(long)]
    pub prune: bool,
    /// Instances of the pruned project.
    #[arg(long, default_value_t = 1_000)]
    pub prune_instances: usize,
    /// Records of each.
    #[arg(long, default_value_t = 1_000)]
    pub prune_tasks_per_instance: usize,
    /// Count the server's instructions per operation on a small fixed workload (release build,
    /// under valgrind's callgrind) and check them against `--budgets`: the CI performance guard
    /// (`scripts/perf-guard.sh`). SQLite only; the population and sizing flags do not apply.
    #[arg(long)]
    pub instructions: bool,
    /// Measure test control's reset instead: seed `--reset-tasks` finished tasks, reset, again
    /// for `--reset-rounds` rounds; prints each and the median (build with `--release`).
    #[arg(long)]
    pub reset: bool,
    /// Tasks stored before each reset.
    #[arg(long, default_value_t = 10_000)]
    pub reset_tasks: usize,
    /// Rounds of seed and reset.
    #[arg(long, default_value_t = 5)]
    pub reset_rounds: usize,
    /// The budgets `--instructions` checks (instructions, and the SQLite writer thread's I/O).
    #[arg(long, default_value = "bench/instructions.toml")]
    pub budgets: PathBuf,
    /// With `--instructions`: runs of the workload (fresh store and server each); the median is
    /// checked and each operation's spread printed.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
}

struct Row {
    name: &'static str,
    m: Measured,
    server_cpu: f64,
    gen_cpu: f64,
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 here; the kernel counts 100 a second.
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

struct Server {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

async fn start_server(database: &str, master_key: &str, log: &PathBuf) -> anyhow::Result<(Server, Duration)> {
    start_server_with(database, master_key, log, &[]).await
}

/// As [`start_server`], with more `serve` flags.
async fn start_server_with(
    database: &str,
    master_key: &str,
    log: &PathBuf,
    extra: &[&str],
) -> anyhow::Result<(Server, Duration)> {
    start_server_under(&[], &[], database, master_key, log, extra).await
}

/// As [`start_server_with`], the server run by `wrapper` (a program and its arguments, such as
/// valgrind, which then has the server's process id), with the environment variables `env`.
/// The server binary `--server-bin` named, set once by [`run`].
static SERVER_BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The server binary: `--server-bin`, or `kafka-tasks` beside this program.
fn server_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = SERVER_BIN.get() {
        return Ok(path.clone());
    }
    let beside = std::env::current_exe()?.with_file_name(format!("kafka-tasks{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        beside.is_file(),
        "no server binary at {}: build it (cargo build --release -p kafka-tasks) or name one with --server-bin",
        beside.display()
    );
    Ok(beside)
}

async fn start_server_under(
    wrapper: &[String],
    env: &[(&str, &str)],
    database: &str,
    master_key: &str,
    log: &PathBuf,
    extra: &[&str],
) -> anyhow::Result<(Server, Duration)> {
    let addr = free_port()?;
    let exe = server_bin()?;
    let log_file = std::fs::File::create(log)?;
    let started = Instant::now();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let child = command
        .args(["serve", "--listen", &addr.to_string(), "--database", database, "--master-key", master_key])
        // The per-key rate limit stays on (its cost is measured) but far above what one key sends here.
        .args(["--time-scale", "0", "--log-format", "json", "--rate-limit-per-key", "1000000"])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()?;
    let server = Server { child, addr };
    // A server under an instrumenting wrapper starts tens of times slower.
    let deadline = started + Duration::from_secs(if wrapper.is_empty() { 30 } else { 300 });
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            if buf.starts_with(b"HTTP/1.1 200") {
                return Ok((server, started.elapsed()));
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("the server did not become ready; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn get(path_and_query: String) -> Option<Call> {
    Some(Call { method: "GET", path_and_query, body: None })
}

pub async fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if let Some(path) = args.server_bin.take() {
        anyhow::ensure!(path.is_file(), "--server-bin {}: no such file", path.display());
        let _ = SERVER_BIN.set(path);
    }
    if args.quick {
        args.hot_tasks = args.hot_tasks.min(2_000);
        args.instances = args.instances.min(40);
        args.tasks_per_instance = args.tasks_per_instance.min(100);
        args.seconds = args.seconds.min(1.0);
        args.connections = args.connections.min(16);
        args.drain_tasks = args.drain_tasks.min(500);
        args.event_samples = args.event_samples.min(50);
        args.prune_instances = args.prune_instances.min(20);
        args.prune_tasks_per_instance = args.prune_tasks_per_instance.min(500);
    }
    if args.events_only {
        args.hot_tasks = args.hot_tasks.min(100);
        args.instances = args.instances.clamp(8, 64);
        args.tasks_per_instance = args.tasks_per_instance.min(10);
    }
    let work = std::env::temp_dir().join(format!("kafka-tasks-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work)?;
    let (database, pg_db) = match args.engine.as_str() {
        "sqlite" => (format!("sqlite:{}", work.join("bench.db").display()), None),
        "postgres" => {
            let name = format!("kt_bench_{}", uuid::Uuid::new_v4().simple());
            let (client, conn) =
                tokio_postgres::connect(&format!("{}/postgres", args.pg_server), tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
            (format!("{}/{name}", args.pg_server), Some((client, name)))
        }
        other => anyhow::bail!("--engine must be sqlite or postgres, not {other:?}"),
    };
    let result = if args.instructions {
        instructions::run(&args, &work).await
    } else if args.reset {
        reset::run(&args, &database).await
    } else if args.prune {
        prune::run(&args, &database, &work).await
    } else {
        bench(&args, &database, &work).await
    };
    if !args.keep {
        if let Some((client, name)) = &pg_db {
            client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
        }
        let _ = std::fs::remove_dir_all(&work);
    } else if args.instructions {
        eprintln!("kept the stores, server logs and callgrind dumps: {}", work.display());
    } else {
        eprintln!("kept the database: {database}");
    }
    result
}

async fn bench(args: &BenchArgs, database: &str, work: &std::path::Path) -> anyhow::Result<()> {
    let key_hex = hex::encode(uuid::Uuid::new_v4().as_bytes()).repeat(2);
    let master = MasterKey::from_hex(&key_hex)?;
    let project: ProjectId = "0123456789abcdef0123456789abcdef".parse().map_err(|_| anyhow::anyhow!("project"))?;

    // Seed straight into the store.
    let seed_started = Instant::now();
    let (pop, cred) = {
        let storage = Storage::open(database).await?;
        let cred = bench_credential(&storage, &master, &project).await?;
        let pop =
            seed::seed(&storage, &project, now_ms(), args.hot_tasks, args.instances, args.tasks_per_instance).await?;
        (pop, cred)
    };
    let seeded = args.hot_tasks + args.instances * args.tasks_per_instance;
    let seed_secs = seed_started.elapsed().as_secs_f64();
    if !args.json {
        eprintln!("seeded {seeded} tasks in {} instances in {seed_secs:.1} s", args.instances + 1);
    }

    let log = work.join("server.log");
    let (server, startup) = start_server(database, &key_hex, &log).await?;
    let pid = server.child.id().to_string();
    let me = std::process::id().to_string();
    let target = Target {
        addr: server.addr,
        access_key: cred.access_key.clone(),
        secret_key: cred.secret_key.clone(),
        algorithm: kafka_tasks::auth::signature::Algorithm::Sha256,
    };
    let dur = Duration::from_secs_f64(args.seconds);
    let p = project.as_str().to_owned();
    let hot = pop.hot.as_str().to_owned();
    let hot_base = format!("/v2/{p}/instances/{hot}/tasks");

    let mut rows: Vec<Row> = Vec::new();
    let mut measure = |name: &'static str, m: Measured, cpu0: (f64, f64)| {
        let secs = m.seconds.max(1e-9);
        let server_cpu = (cpu_seconds(&pid) - cpu0.0) / secs * 100.0;
        let gen_cpu = (cpu_seconds(&me) - cpu0.1) / secs * 100.0;
        if let Some(e) = &m.first_error {
            eprintln!("{name}: first error: {e}");
        }
        rows.push(Row { name, m, server_cpu, gen_cpu });
    };
    let cpu_now = || (cpu_seconds(&pid), cpu_seconds(&me));

    // Warm up connections and caches.
    let healthz: CallMaker = Arc::new(|_, _| get("/healthz".into()));
    load::run(&target, args.connections, Duration::from_millis(500), healthz.clone(), 200, None).await;

    if args.events_only {
        let instances: Vec<String> = pop.others.iter().map(|i| i.as_str().to_owned()).collect();
        let d = events::measure(&target, project.as_str(), &instances, args.event_samples.max(1)).await?;
        print_delivery(args, &d);
        return Ok(());
    }
    let c = cpu_now();
    measure("GET /healthz (baseline)", load::run(&target, args.connections, dur, healthz, 200, None).await, c);

    let sample = Arc::new(pop.hot_sample.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>());
    let pick = |w: usize, i: u64, n: usize| {
        ((w as u64).wrapping_mul(7919).wrapping_add(i.wrapping_mul(104_729)) % n as u64) as usize
    };

    let (s, b) = (sample.clone(), hot_base.clone());
    let show: CallMaker = Arc::new(move |w, i| get(format!("{b}/{}", s[pick(w, i, s.len())])));
    let c = cpu_now();
    measure("ShowBackgroundTask", load::run(&target, args.connections, dur, show, 200, None).await, c);

    let (s, b) = (sample.clone(), hot_base.clone());
    let progress: CallMaker = Arc::new(move |w, i| get(format!("{b}/{}/progress", s[pick(w, i, s.len())])));
    let c = cpu_now();
    measure("ShowBackgroundTaskProgress", load::run(&target, args.connections, dur, progress, 200, None).await, c);

    let b = hot_base.clone();
    let list: CallMaker = Arc::new(move |_, _| get(format!("{b}?start=1&limit=10")));
    let c = cpu_now();
    measure("ListBackgroundTasks page 1", load::run(&target, args.connections, dur, list, 200, None).await, c);

    let deep_start = (args.hot_tasks * 9 / 10).max(1) + 1;
    let b = hot_base.clone();
    let deep: CallMaker = Arc::new(move |_, _| get(format!("{b}?start={deep_start}&limit=10")));
    let c = cpu_now();
    measure("ListBackgroundTasks deep start", load::run(&target, args.connections, dur, deep, 200, None).await, c);

    // A 30-day window in the middle of the year, and its third page.
    let mid = (pop.oldest + pop.newest) / 2;
    let (from, to) = (CompactTime(mid - 15 * 86_400_000), CompactTime(mid + 15 * 86_400_000));
    let b = hot_base.clone();
    let filtered: CallMaker =
        Arc::new(move |_, _| get(format!("{b}?begin_time={from}&end_time={to}&start=21&limit=10")));
    let c = cpu_now();
    measure("ListBackgroundTasks time filter", load::run(&target, args.connections, dur, filtered, 200, None).await, c);

    // Every finished task of the other instances, each deleted once, handed out in turn.
    let project = &project;
    let victims: Arc<Vec<String>> = Arc::new(
        pop.others
            .iter()
            .zip(&pop.other_tasks)
            .flat_map(|(i, ts)| {
                ts.iter()
                    .map(move |t| format!("/v2/{p}/instances/{i}/tasks/{t}", p = project.as_str()))
                    .collect::<Vec<_>>()
            })
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let v = victims.clone();
    let delete: CallMaker = Arc::new(move |_, _| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        v.get(n).map(|path| Call { method: "DELETE", path_and_query: path.clone(), body: None })
    });
    let c = cpu_now();
    measure("DeleteBackgroundTask", load::run(&target, args.connections, dur, delete, 204, None).await, c);

    // Engine: operations submitted over HTTP, run to SUCCESS at --time-scale 0.
    let instances: Arc<Vec<String>> = Arc::new(pop.others.iter().map(|i| i.as_str().to_owned()).collect());
    let conns = args.connections;
    let per_worker = (instances.len() / conns).max(1);
    let (ins, pp) = (instances.clone(), p.clone());
    let submit: CallMaker = Arc::new(move |w, i| {
        let inst = &ins[(w + (i as usize % per_worker) * conns) % ins.len()];
        Some(Call {
            method: "POST",
            path_and_query: format!("/v2/{pp}/instances/{inst}/autotopic"),
            body: Some(json!({ "enable_auto_topic": i % 2 == 0 }).to_string()),
        })
    });
    let storage = Storage::open(database).await?;
    let c = cpu_now();
    let started = Instant::now();
    let mut engine = load::run(&target, args.connections, dur, submit, 200, Some(400)).await;
    while storage.engine.unfinished_count().await? > 0 {
        if started.elapsed() > dur * 20 {
            anyhow::bail!("the engine did not finish the submitted tasks");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    engine.seconds = started.elapsed().as_secs_f64();
    let accepted = engine.requests;
    let refused = engine.busy;
    measure("engine: tasks run to SUCCESS", engine, c);

    // Event delivery, on an idle server (the engine's burst is over).
    let delivery = if args.event_samples > 0 {
        let instances: Vec<String> = pop.others.iter().map(|i| i.as_str().to_owned()).collect();
        Some(events::measure(&target, project.as_str(), &instances, args.event_samples).await?)
    } else {
        None
    };
    let rss_kib = peak_rss_kib(server.child.id());
    drop(server);

    // Drain: tasks already queued when the server starts, run to SUCCESS.
    seed::queue(&storage, project, now_ms(), args.drain_tasks).await?;
    let started = Instant::now();
    let (server, _) = start_server(database, &key_hex, &log).await?;
    while storage.engine.unfinished_count().await? > 0 {
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the engine did not drain the queue");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = Drain { tasks: args.drain_tasks, seconds: started.elapsed().as_secs_f64() };
    drop(server);
    let peer = if args.peer { Some(run_peer(args, args.drain_tasks).await) } else { None };
    let summary = Summary { seeded, seed_secs, startup, rss_kib, accepted, refused, drain, peer };
    print_report(args, &rows, &summary, database);
    if let Some(d) = &delivery {
        print_delivery(args, d);
    }
    Ok(())
}

fn print_delivery(args: &BenchArgs, d: &events::Delivery) {
    if args.json {
        println!("{}", json!({ "engine": args.engine, "event_delivery": d }));
        return;
    }
    println!(
        "event delivery ({} operations, one at a time): commit's answer → event p50 {:.2} ms, p99 {:.2} ms          ({} events came before the answer); submit → event p50 {:.2} ms, p99 {:.2} ms",
        d.samples,
        d.after_answer_p50_ms,
        d.after_answer_p99_ms,
        d.before_answer,
        d.from_submit_p50_ms,
        d.from_submit_p99_ms
    );
}

/// The admin key the load generator signs with.
async fn bench_credential(
    storage: &Storage,
    master: &MasterKey,
    project: &ProjectId,
) -> anyhow::Result<kafka_tasks::auth::IssuedCredential> {
    kafka_tasks::auth::create_credential(
        storage.credentials.as_ref(),
        master,
        project,
        "bench",
        Role::Admin,
        now_ms(),
        false,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("credential not created"))
}

struct Drain {
    tasks: usize,
    seconds: f64,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.tasks as f64 / self.seconds.max(1e-9)
    }
}

struct Summary {
    seeded: usize,
    seed_secs: f64,
    startup: Duration,
    rss_kib: u64,
    accepted: u64,
    refused: u64,
    drain: Drain,
    /// graphile-worker's jobs/s on the same server, or why it did not run.
    peer: Option<Result<f64, String>>,
}

/// Runs `bench/graphile-worker/run.mjs` on the PostgreSQL server of `--pg-server`.
async fn run_peer(args: &BenchArgs, jobs: usize) -> Result<f64, String> {
    if args.engine != "postgres" {
        return Err("--peer needs --engine postgres".into());
    }
    let script = std::path::Path::new("bench/graphile-worker/run.mjs");
    if !script.exists() || !std::path::Path::new("bench/graphile-worker/node_modules").exists() {
        return Err("run `npm ci --prefix bench/graphile-worker` first (from the repository root)".into());
    }
    let out = tokio::process::Command::new("node")
        .arg(script)
        .args(["--url", &args.pg_server, "--jobs", &jobs.to_string(), "--concurrency", &args.connections.to_string()])
        .stderr(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run node: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        text.lines().rev().find(|l| l.starts_with('{')).ok_or_else(|| format!("no result from the peer: {text}"))?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    v["jobs_per_s"].as_f64().ok_or_else(|| format!("no jobs_per_s in {line}"))
}

fn print_report(args: &BenchArgs, rows: &[Row], sum: &Summary, database: &str) {
    let base = rows.first().map_or(1.0, |r| r.m.rps().max(1e-9));
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                .split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_owned()))
            .unwrap_or_default()
    );
    let peer = match &sum.peer {
        Some(Ok(r)) => json!(r),
        Some(Err(e)) => json!(e),
        None => serde_json::Value::Null,
    };
    if args.json {
        let ops: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "operation": r.name, "requests_per_s": r.m.rps(), "p50_ms": r.m.p50_ms, "p99_ms": r.m.p99_ms,
                    "p999_ms": r.m.p999_ms, "errors": r.m.errors, "vs_healthz": r.m.rps() / base,
                    "server_cpu_pct": r.server_cpu, "generator_cpu_pct": r.gen_cpu, "requests": r.m.requests,
                })
            })
            .collect();
        let out = json!({
            "engine": args.engine, "machine": machine, "connections": args.connections, "seconds": args.seconds,
            "seeded_tasks": sum.seeded, "seed_seconds": sum.seed_secs, "startup_ms": sum.startup.as_secs_f64() * 1000.0,
            "server_peak_rss_mib": sum.rss_kib as f64 / 1024.0, "engine_accepted": sum.accepted,
            "engine_refused_busy": sum.refused, "drain_tasks": sum.drain.tasks, "drain_tasks_per_s": sum.drain.rate(),
            "peer_graphile_worker_jobs_per_s": peer, "operations": ops,
        });
        println!("{out}");
        return;
    }
    println!(
        "kafka-tasks-bench: {} ({}), {} tasks seeded in {:.1} s, {} connections, {} s per operation, {machine}",
        args.engine,
        kafka_tasks::server::redact(database),
        sum.seeded,
        sum.seed_secs,
        args.connections,
        args.seconds
    );
    println!(
        "{:<34} {:>10} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8}",
        "operation", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "vs /hz", "srv CPU", "gen CPU"
    );
    for r in rows {
        println!(
            "{:<34} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>7.0}% {:>7.0}% {:>7.0}%",
            r.name,
            r.m.rps(),
            r.m.p50_ms,
            r.m.p99_ms,
            r.m.p999_ms,
            r.m.errors,
            r.m.rps() / base * 100.0,
            r.server_cpu,
            r.gen_cpu
        );
    }
    println!(
        "engine over HTTP: {} operations submitted, authenticated, audited and run to SUCCESS ({} refused while \
         their instance was busy); req/s counts them over submission plus drain time",
        sum.accepted, sum.refused
    );
    println!(
        "engine drain: {} queued tasks run to SUCCESS in {:.2} s = {:.0} tasks/s",
        sum.drain.tasks,
        sum.drain.seconds,
        sum.drain.rate()
    );
    match &sum.peer {
        Some(Ok(r)) => println!("peer: graphile-worker no-op jobs on the same PostgreSQL: {r:.0} jobs/s"),
        Some(Err(e)) => println!("peer: not run: {e}"),
        None => {}
    }
    println!(
        "server start-up to ready: {:.0} ms; server peak RSS: {:.1} MiB",
        sum.startup.as_secs_f64() * 1000.0,
        sum.rss_kib as f64 / 1024.0
    );
}
