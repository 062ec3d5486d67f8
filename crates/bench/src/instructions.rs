//! `kafka-tasks-bench --instructions`: the performance guard CI runs (`scripts/perf-guard.sh`).
//!
//! It seeds a small fixed population, starts the release server under callgrind (valgrind) and
//! counts the instructions the server process executes per request, or per task for the
//! engine, phase by phase, against the budgets committed in `bench/instructions.toml`. A count
//! of instructions does not move with the machine's load the way seconds do, so a 10 % margin
//! catches the regressions that timed runs on shared machines lose in their noise.
//!
//! Each phase sends its requests one at a time on one keep-alive connection, after warm-up
//! requests of the same kind (lazy initialisation, statement caches); the counters are zeroed
//! before the phase and dumped after it, so that a phase counts everything the process did
//! meanwhile, on every thread. Whatever the wall clock or chance decides is kept out, so that
//! five runs agree within half a percent:
//!
//! - the server's timed loops (engine poll, lease renewal, pruners, store sampler) run at
//!   their longest intervals, and its tokio runtime has a fixed number of workers;
//! - the engine tasks over HTTP run one at a time, and a task is done when the server logs its
//!   end (claim batches then do not depend on timing, and no phase ends in the middle of one);
//! - the population's ids are deterministic (see `seed`), so every run has the same B-trees;
//! - before each phase the WAL is emptied, and over each phase of writes it is pinned
//!   ([`WalPin`]): the server's quarter-second checkpointer then finds nothing to copy and does
//!   not restart the WAL inside a phase, which moved the writes' counts by 1-4 %.
//!
//! What is left is the metrics upkeep and memory trimmer threads (every 5 and 10 s, a few
//! hundred thousand instructions) and glibc's malloc, whose paths depend on which worker thread
//! ran what.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::load::{self, Call, Target};
use super::{BenchArgs, bench_credential, seed, start_server_under};
use kafka_tasks::auth::keys::MasterKey;
use kafka_tasks::domain::{ProjectId, now_ms};
use kafka_tasks::storage::Storage;
use kafka_tasks::storage::sqlite::WalPin;

/// An operation more than this over its budget fails the check.
const OVER_BUDGET: f64 = 0.10;
/// An operation more than this under its budget gets a hint to lower the budget.
const UNDER_BUDGET: f64 = 0.20;

/// The fixed workload. Small, because callgrind runs the server tens of times slower.
const HOT_TASKS: usize = 5_000;
const INSTANCES: usize = 20;
const TASKS_PER_INSTANCE: usize = 50;
/// Requests of each measured request phase, and the warm-up requests before each.
const REQUESTS: usize = 300;
const WARM_UP: usize = 20;
/// Tasks submitted over HTTP one at a time, each run to SUCCESS before the next is sent.
const ENGINE_TASKS: usize = 100;
const ENGINE_WARM_UP: usize = 5;
/// Tasks queued behind the server's back, then drained at once.
const DRAIN_TASKS: usize = 500;

/// The server's environment: its log level fixed (the log lines are part of the work counted,
/// and the engine's `task ended` lines tell when a task is done), and as many tokio workers as
/// on the machine the budgets were set on, whatever this one has (workers that find no work
/// look for some to steal, which costs instructions).
const ENV: &[(&str, &str)] = &[("KAFKA_TASKS_LOG", "info"), ("TOKIO_WORKER_THREADS", "2")];

/// What the server is started with besides the bench's usual flags: every wall-clock loop at its
/// longest interval, so that none of them runs inside a phase in a way the slowness of the
/// machine decides.
const QUIET: &[&str] = &[
    "--poll-ms",
    "60000",
    "--lease-ms",
    "3600000",
    "--event-prune-ms",
    "3600000",
    "--event-poll-ms",
    "600000",
    "--retention-interval-ms",
    "86400000",
    "--store-sample-ms",
    "3600000",
];

#[derive(Clone, Copy, PartialEq)]
enum Per {
    Request,
    Task,
}

impl Per {
    fn as_str(self) -> &'static str {
        match self {
            Per::Request => "request",
            Per::Task => "task",
        }
    }
}

/// One measured operation: its key in the budget file and its name in the table.
struct Operation {
    key: &'static str,
    name: &'static str,
    per: Per,
}

const OPERATIONS: [Operation; 14] = [
    Operation { key: "healthz", name: "GET /healthz", per: Per::Request },
    Operation { key: "show", name: "ShowBackgroundTask", per: Per::Request },
    Operation { key: "progress", name: "ShowBackgroundTaskProgress", per: Per::Request },
    Operation { key: "list_page_1", name: "ListBackgroundTasks page 1", per: Per::Request },
    Operation { key: "list_deep", name: "ListBackgroundTasks deep page", per: Per::Request },
    Operation { key: "delete", name: "DeleteBackgroundTask", per: Per::Request },
    Operation { key: "engine_over_http", name: "engine: submitted over HTTP, run", per: Per::Task },
    Operation { key: "engine_drain", name: "engine: drain of queued tasks", per: Per::Task },
    // ShowBackgroundTask signed in each other mode of the SDKs (`show` is SDK-HMAC-SHA256), with
    // the key's derived public key cached, then with a key never seen (its derivation counted).
    Operation { key: "show_hmac_sm3", name: "ShowBackgroundTask, SDK-HMAC-SM3", per: Per::Request },
    Operation { key: "show_ecdsa_p256", name: "ShowBackgroundTask, SDK-ECDSA-P256-SHA256", per: Per::Request },
    Operation { key: "show_sm2_sm3", name: "ShowBackgroundTask, SDK-SM2-SM3", per: Per::Request },
    Operation { key: "show_v11", name: "ShowBackgroundTask, V11-HMAC-SHA256", per: Per::Request },
    Operation { key: "show_ecdsa_p256_new_key", name: "… ECDSA, first use of a key", per: Per::Request },
    Operation { key: "show_sm2_sm3_new_key", name: "… SM2, first use of a key", per: Per::Request },
];

/// Requests of the signing phases (each an ECDSA or SM2 verification, slow under callgrind),
/// and fresh keys for each first-use phase.
const SIGNED_REQUESTS: usize = 100;
const NEW_KEYS: usize = 20;

/// The budgets file: `key = instructions`, one line per operation.
fn read_budgets(path: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("cannot read the budgets {}: {e} (run from the repository root)", path.display())
    })?;
    let budgets: BTreeMap<String, u64> =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for key in budgets.keys() {
        anyhow::ensure!(
            OPERATIONS.iter().any(|o| o.key == key),
            "{}: {key:?} is no operation the guard measures",
            path.display()
        );
    }
    for op in &OPERATIONS {
        anyhow::ensure!(budgets.contains_key(op.key), "{}: no budget for {:?}", path.display(), op.key);
    }
    Ok(budgets)
}

pub async fn run(args: &BenchArgs, work: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(args.engine == "sqlite", "--instructions measures the SQLite engine only");
    anyhow::ensure!(
        !cfg!(debug_assertions),
        "--instructions counts a release build: cargo build --release, then target/release/kafka-tasks"
    );
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let budgets = read_budgets(&args.budgets)?;
    for tool in ["valgrind", "callgrind_control"] {
        let found = tokio::process::Command::new(tool).arg("--version").output().await;
        anyhow::ensure!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} not found: install valgrind (scripts/perf-guard.sh does)"
        );
    }
    let started = Instant::now();
    let mut runs: Vec<Vec<u64>> = Vec::new();
    for n in 1..=args.runs {
        let dir = work.join(format!("run-{n}"));
        std::fs::create_dir_all(&dir)?;
        let t = Instant::now();
        let figures = measure(&dir).await?;
        if !args.json {
            eprintln!("run {n} of {}: {:.0} s", args.runs, t.elapsed().as_secs_f64());
        }
        runs.push(figures);
    }
    report(args, &budgets, &runs, started.elapsed())
}

/// The server process under callgrind, and its dumps.
struct Callgrind {
    pid: String,
    dir: PathBuf,
}

impl Callgrind {
    const OUT: &'static str = "callgrind.out";

    fn wrapper(dir: &Path) -> Vec<String> {
        vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", dir.join(Self::OUT).display()),
            format!("--log-file={}", dir.join("valgrind.log").display()),
        ]
    }

    async fn control(&self, what: &str) -> anyhow::Result<()> {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new("callgrind_control").arg(what).arg(&self.pid).output(),
        )
        .await
        .map_err(|_| anyhow::anyhow!("callgrind_control {what} did not answer in 120 s"))??;
        let text = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success() && !text.contains("Error") && !text.contains("No active callgrind"),
            "callgrind_control {what} {}: {text}{}",
            self.pid,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn dumps(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(Self::OUT)) {
                found.push(path);
            }
        }
        Ok(found)
    }

    /// Zeroes the counters: what follows is the phase.
    async fn zero(&self) -> anyhow::Result<()> {
        self.control("--zero").await
    }

    /// Writes the counts since the last zero to `callgrind.<key>.out` and returns their total.
    async fn dump(&self, key: &str) -> anyhow::Result<u64> {
        let before = self.dumps()?;
        self.control(&format!("--dump={key}")).await?;
        let new: Vec<PathBuf> = self.dumps()?.into_iter().filter(|p| !before.contains(p)).collect();
        let [file] = new.as_slice() else {
            anyhow::bail!("expected one new callgrind dump in {}, found {new:?}", self.dir.display());
        };
        let kept = self.dir.join(format!("callgrind.{key}.out"));
        std::fs::rename(file, &kept)?;
        let text = std::fs::read_to_string(&kept)?;
        text.lines()
            .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no total in {}", kept.display()))
    }
}

/// One keep-alive connection, requests one at a time.
struct Client {
    worker: load::Worker,
    target: Target,
    host: String,
}

impl Client {
    async fn send(&mut self, call: &Call, expect: u16) -> anyhow::Result<()> {
        let status = load::send(&mut self.worker, &self.target, &self.host, call)
            .await
            .map_err(|e| anyhow::anyhow!("{} {}: {e}", call.method, call.path_and_query))?;
        anyhow::ensure!(
            status == expect,
            "{} {} answered {status}, not {expect}: an error costs other instructions than the operation",
            call.method,
            call.path_and_query
        );
        Ok(())
    }

    async fn send_all(&mut self, calls: impl IntoIterator<Item = Call>, expect: u16) -> anyhow::Result<()> {
        for call in calls {
            self.send(&call, expect).await?;
        }
        Ok(())
    }
}

/// The i-th request of a phase.
type MakeCall<'a> = Box<dyn Fn(usize) -> Call + 'a>;

fn get(path_and_query: String) -> Call {
    Call { method: "GET", path_and_query, body: None }
}

/// Follows the server's log for the engine's `task ended` lines: a task counts as done once it
/// is logged, which is after everything the engine does for it (the store's answer that the
/// task finished comes earlier, and waiting for that alone cut the engine's work off at a
/// different point in every run).
struct EndedTasks {
    file: std::fs::File,
    partial: Vec<u8>,
    ended: usize,
}

impl EndedTasks {
    const LINE: &'static [u8] = b"\"message\":\"task ended\"";

    fn open(log: &Path) -> anyhow::Result<Self> {
        Ok(EndedTasks { file: std::fs::File::open(log)?, partial: Vec::new(), ended: 0 })
    }

    /// Tasks logged as ended so far.
    fn count(&mut self) -> anyhow::Result<usize> {
        use std::io::Read;
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf)?;
        self.partial.extend_from_slice(&buf);
        if let Some(last) = self.partial.iter().rposition(|b| *b == b'\n') {
            let complete: Vec<u8> = self.partial.drain(..=last).collect();
            self.ended += complete
                .split(|b| *b == b'\n')
                .filter(|line| line.windows(Self::LINE.len()).any(|w| w == Self::LINE))
                .count();
        }
        Ok(self.ended)
    }

    async fn wait_for(&mut self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.count()? < n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the server logged {} tasks as ended, not {n}, in 600 s",
                self.ended
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

/// One run of the workload on a fresh store and server: instructions per request or task, in
/// the order of [`OPERATIONS`].
async fn measure(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let db_path = dir.join("bench.db");
    let database = format!("sqlite:{}", db_path.display());
    let key_hex = hex::encode(uuid::Uuid::new_v4().as_bytes()).repeat(2);
    let master = MasterKey::from_hex(&key_hex)?;
    let project: ProjectId = "0123456789abcdef0123456789abcdef".parse().map_err(|_| anyhow::anyhow!("project"))?;
    // Seeded relative to the last midnight (UTC), so that the tasks fall on the same day buckets
    // in every run and the deep page walks the same buckets.
    const DAY_MS: i64 = 86_400_000;
    let seed_now = now_ms() / DAY_MS * DAY_MS;
    let (pop, cred, new_keys) = {
        let storage = Storage::open(&database).await?;
        let cred = bench_credential(&storage, &master, &project).await?;
        let mut new_keys = vec![];
        for _ in 0..2 * NEW_KEYS {
            new_keys.push(bench_credential(&storage, &master, &project).await?);
        }
        let pop = seed::seed(&storage, &project, seed_now, HOT_TASKS, INSTANCES, TASKS_PER_INSTANCE).await?;
        (pop, cred, new_keys)
    };
    let p = project.as_str();
    let needed_victims = WARM_UP + REQUESTS;
    // The first two instances are the engine's; the tasks of the others are deleted.
    let victims: Vec<String> = pop
        .others
        .iter()
        .zip(&pop.other_tasks)
        .skip(2)
        .flat_map(|(i, ts)| ts.iter().map(move |t| format!("/v2/{p}/instances/{i}/tasks/{t}")))
        .collect();
    anyhow::ensure!(victims.len() >= needed_victims, "the population has too few tasks to delete");
    let (Some(engine_instance), Some(trigger_instance)) = (pop.others.first(), pop.others.get(1)) else {
        anyhow::bail!("the population has too few instances");
    };

    let log = dir.join("server.log");
    let wrapper = Callgrind::wrapper(dir);
    let (server, _) = start_server_under(&wrapper, ENV, &database, &key_hex, &log, QUIET).await?;
    let callgrind = Callgrind { pid: server.child.id().to_string(), dir: dir.to_owned() };
    let target = Target {
        addr: server.addr,
        access_key: cred.access_key.clone(),
        secret_key: cred.secret_key.clone(),
        algorithm: kafka_tasks::auth::signature::Algorithm::Sha256,
    };
    let worker = load::connect(server.addr).await?;
    let mut client = Client { worker, host: server.addr.to_string(), target };
    let mut ended = EndedTasks::open(&log)?;
    let wal = WalPin::open(&db_path)?;

    let hot_base = format!("/v2/{p}/instances/{}/tasks", pop.hot);
    let sample: Vec<String> = pop.hot_sample.iter().map(|t| t.as_str().to_owned()).collect();
    let deep_start = HOT_TASKS * 9 / 10 + 1;
    // The read phases: the i-th request of each, warm-up and measured alike (a show or progress
    // request walks the sampled tasks).
    let reads: [(&str, MakeCall); 5] = [
        ("healthz", Box::new(|_| get("/healthz".into()))),
        ("show", Box::new(|i| get(format!("{hot_base}/{}", sample[i * 7 % sample.len()])))),
        ("progress", Box::new(|i| get(format!("{hot_base}/{}/progress", sample[i * 7 % sample.len()])))),
        ("list_page_1", Box::new(|_| get(format!("{hot_base}?start=1&limit=10")))),
        ("list_deep", Box::new(|_| get(format!("{hot_base}?start={deep_start}&limit=10")))),
    ];
    let mut totals: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for (key, make) in &reads {
        client.send_all((0..WARM_UP).map(make), 200).await?;
        wal.empty()?;
        callgrind.zero().await?;
        client.send_all((0..REQUESTS).map(make), 200).await?;
        totals.insert(key, (callgrind.dump(key).await?, REQUESTS));
    }

    // The other signing modes over the show request: warmed up (the key's pair derived), then
    // measured; then the asymmetric ones with a fresh key per request. Every phase after these
    // is signed as the ones before (SDK-HMAC-SHA256): `main_key` is taken before any mode
    // changes (once it was taken after, and the delete and engine phases were signed in
    // V11-HMAC-SHA256, whose key derivation added ~35k instructions a request to them).
    use kafka_tasks::auth::signature::Algorithm;
    let main_key = client.target.clone();
    let show = |i: usize| get(format!("{hot_base}/{}", sample[i * 7 % sample.len()]));
    for (key, algorithm) in [
        ("show_hmac_sm3", Algorithm::Sm3),
        ("show_ecdsa_p256", Algorithm::EcdsaP256),
        ("show_sm2_sm3", Algorithm::Sm2),
        ("show_v11", Algorithm::V11),
    ] {
        client.target = Target { algorithm, ..main_key.clone() };
        client.send_all((0..WARM_UP).map(show), 200).await?;
        callgrind.zero().await?;
        client.send_all((0..SIGNED_REQUESTS).map(show), 200).await?;
        totals.insert(key, (callgrind.dump(key).await?, SIGNED_REQUESTS));
    }
    for (key, algorithm, fresh) in [
        ("show_ecdsa_p256_new_key", Algorithm::EcdsaP256, &new_keys[..NEW_KEYS]),
        ("show_sm2_sm3_new_key", Algorithm::Sm2, &new_keys[NEW_KEYS..]),
    ] {
        callgrind.zero().await?;
        for (i, k) in fresh.iter().enumerate() {
            client.target = Target {
                access_key: k.access_key.clone(),
                secret_key: k.secret_key.clone(),
                algorithm,
                ..main_key.clone()
            };
            client.send(&show(i), 200).await?;
        }
        totals.insert(key, (callgrind.dump(key).await?, NEW_KEYS));
    }
    client.target = main_key;

    // Every delete removes another finished task of the other instances.
    let delete = |path: &String| Call { method: "DELETE", path_and_query: path.clone(), body: None };
    client.send_all(victims[..WARM_UP].iter().map(delete), 204).await?;
    wal.hold()?;
    callgrind.zero().await?;
    client.send_all(victims[WARM_UP..needed_victims].iter().map(delete), 204).await?;
    totals.insert("delete", (callgrind.dump("delete").await?, REQUESTS));
    wal.release()?;

    // One auto-topic toggle after another on one instance, each run to SUCCESS before the next.
    let toggle = |instance: &kafka_tasks::domain::InstanceId, on: bool| Call {
        method: "POST",
        path_and_query: format!("/v2/{p}/instances/{instance}/autotopic"),
        body: Some(json!({ "enable_auto_topic": on }).to_string()),
    };
    for i in 0..ENGINE_WARM_UP + ENGINE_TASKS {
        if i == ENGINE_WARM_UP {
            wal.hold()?;
            callgrind.zero().await?;
        }
        client.send(&toggle(engine_instance, i % 2 == 0), 200).await?;
        ended.wait_for(i + 1).await?;
    }
    totals.insert("engine_over_http", (callgrind.dump("engine_over_http").await?, ENGINE_TASKS));
    wal.release()?;
    let submitted = ENGINE_WARM_UP + ENGINE_TASKS;

    // Tasks queued behind the server's back: its engine sees them when the next submission wakes
    // it, and then claims them all, batch after batch.
    {
        let storage = Storage::open(&database).await?;
        seed::queue(&storage, &project, now_ms(), DRAIN_TASKS).await?;
    }
    anyhow::ensure!(ended.count()? == submitted, "the engine started on the queued tasks before the drain phase");
    wal.hold()?;
    callgrind.zero().await?;
    client.send(&toggle(trigger_instance, true), 200).await?;
    ended.wait_for(submitted + DRAIN_TASKS + 1).await?;
    totals.insert("engine_drain", (callgrind.dump("engine_drain").await?, DRAIN_TASKS + 1));
    wal.release()?;
    drop(server);

    Ok(OPERATIONS
        .iter()
        .map(|op| totals.get(op.key).map_or(0, |(total, n)| (*total as f64 / *n as f64).round() as u64))
        .collect())
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn median(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    match s.len() {
        0 => 0,
        n if !n.is_multiple_of(2) => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]).div_ceil(2),
    }
}

/// (max - min) / mean.
fn spread(v: &[u64]) -> f64 {
    let (Some(min), Some(max)) = (v.iter().min(), v.iter().max()) else { return 0.0 };
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
    if mean > 0.0 { (max - min) as f64 / mean } else { 0.0 }
}

fn report(args: &BenchArgs, budgets: &BTreeMap<String, u64>, runs: &[Vec<u64>], took: Duration) -> anyhow::Result<()> {
    let column = |i: usize| runs.iter().map(|r| r.get(i).copied().unwrap_or(0)).collect::<Vec<u64>>();
    let mut over = Vec::new();
    let mut under = Vec::new();
    let mut rows = Vec::new();
    for (i, op) in OPERATIONS.iter().enumerate() {
        let figures = column(i);
        let measured = median(&figures);
        let budget = budgets.get(op.key).copied().unwrap_or(0);
        let ratio = if budget > 0 { measured as f64 / budget as f64 - 1.0 } else { f64::INFINITY };
        if ratio > OVER_BUDGET {
            over.push((op, measured, budget, ratio));
        } else if ratio < -UNDER_BUDGET {
            under.push((op, measured, budget, ratio));
        }
        rows.push((op, figures, measured, budget, ratio));
    }
    if args.json {
        let ops: Vec<_> = rows
            .iter()
            .map(|(op, figures, measured, budget, ratio)| {
                json!({
                    "operation": op.key, "name": op.name, "per": op.per.as_str(), "runs": figures,
                    "instructions": measured, "budget": budget, "vs_budget": ratio, "spread": spread(figures),
                })
            })
            .collect();
        println!("{}", json!({ "runs": runs.len(), "seconds": took.as_secs_f64(), "operations": ops }));
    } else {
        println!(
            "kafka-tasks-bench --instructions: instructions the server executes per request (per task for the \
             engine), under callgrind; {} run{}, {:.0} s",
            runs.len(),
            if runs.len() == 1 { "" } else { "s, the median checked" },
            took.as_secs_f64()
        );
        print!("{:<34} {:>8}", "operation", "per");
        if runs.len() > 1 {
            for n in 1..=runs.len() {
                print!(" {:>12}", format!("run {n}"));
            }
            print!(" {:>8}", "spread");
        }
        println!(" {:>12} {:>12} {:>10}", "measured", "budget", "vs budget");
        for (op, figures, measured, budget, ratio) in &rows {
            print!("{:<34} {:>8}", op.name, op.per.as_str());
            if runs.len() > 1 {
                for f in figures {
                    print!(" {:>12}", thousands(*f));
                }
                print!(" {:>7.2}%", spread(figures) * 100.0);
            }
            println!(" {:>12} {:>12} {:>+9.1}%", thousands(*measured), thousands(*budget), ratio * 100.0);
        }
    }
    let file = args.budgets.display();
    for (op, measured, budget, ratio) in &under {
        eprintln!(
            "hint: {} ({}) measures {} instructions per {}, {:.0} % under its budget {}: lower it in {file}",
            op.name,
            op.key,
            thousands(*measured),
            op.per.as_str(),
            -ratio * 100.0,
            thousands(*budget)
        );
    }
    for (op, measured, budget, ratio) in &over {
        eprintln!(
            "OVER BUDGET: {} ({}) measures {} instructions per {}, budget {} (+{:.1} %, allowed +{:.0} %)",
            op.name,
            op.key,
            thousands(*measured),
            op.per.as_str(),
            thousands(*budget),
            ratio * 100.0,
            OVER_BUDGET * 100.0
        );
    }
    anyhow::ensure!(
        over.is_empty(),
        "{} operation{} over budget; if the cost is intended, raise the budget in {file} in a commit that says why",
        over.len(),
        if over.len() == 1 { " is" } else { "s are" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(&[3, 1, 2]), 2);
        assert_eq!(median(&[4, 1, 3, 2]), 3);
        assert!((spread(&[90, 100, 110]) - 0.2).abs() < 1e-9);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn the_committed_budgets_name_every_operation() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/instructions.toml");
        let budgets = read_budgets(&path).expect("the committed budgets parse");
        assert_eq!(budgets.len(), OPERATIONS.len());
    }
}
