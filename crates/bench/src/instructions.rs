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
//!
//! Instructions are user space only, and the engine's wall on a quiet machine is not there: its
//! SQLite writer thread spends about half its time in the kernel, in `pread64` of pages missing
//! from SQLite's cache and `pwrite64` of WAL frames (a frame is two writes, its 24-byte header and
//! the 4,096-byte page, for every page a group commit dirtied). An index whose key starts with the
//! instance puts each task's entry on a leaf page of its own: a few percent more instructions, but
//! pages that each commit writes (and first reads). So the guard also reads the kernel's I/O
//! counters of the server's `sqlite-writer` thread (`/proc/<pid>/task/<tid>/io`, see
//! [`ThreadIo`]) right after a phase's zero and right after its last answer, before the dump,
//! and reports per request or task the writer's write calls, bytes written and read calls,
//! checked against the budgets in the file's `[writer_…]` tables like the instructions but with
//! 5 % allowed over, not 10 % (page counts repeat to the byte; one more leaf page a delete is ~+7-10 %):
//!
//! - valgrind runs with `--fair-sched=yes`: its default lock between the guest's threads is a
//!   pipe, of which every thread reads and writes a byte at each switch; that was half the
//!   writer's system calls. The futex-based lock of the fair scheduler makes none, and moved no
//!   instruction figure beyond its usual spread;
//! - the bytes are the WAL frames (4,120 bytes each) plus 8 for each `eventfd` write by which the
//!   writer's answer wakes a parked tokio worker. Those wakes depend on timing (0.6-1.0 a delete
//!   on this machine), so the write calls move by 1-2 % between runs and have no budget; the
//!   bytes, where a wake weighs 1/515 of a frame, do not;
//! - the deletes and the drain work on the seeded tasks (deterministic ids, see above): their
//!   bytes and reads agree to the byte between runs. The tasks submitted over HTTP get random ids,
//!   so the pages they land on and split differ: the engine over HTTP's bytes move by up to 0.35 %
//!   and its reads by 3-11 %: the reads have no budget;
//! - the writer's reads here are the pages a phase touches first after the pin's write dropped
//!   the server's page caches, a far smaller share than on a store of a million tasks, where
//!   most leaves of a scattered index miss the cache: the guard sees the extra pages written,
//!   and the reads only of pages no phase touched before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::load::{self, Call, Target};
use super::thread_io::{IoCounters, ThreadIo};
use super::{BenchArgs, bench_credential, seed, start_server_under};
use kafka_tasks::auth::keys::MasterKey;
use kafka_tasks::domain::{ProjectId, now_ms};
use kafka_tasks::storage::Storage;
use kafka_tasks::storage::sqlite::WalPin;

/// An operation's instructions more than this over their budget fail the check.
const OVER_BUDGET: f64 = 0.10;
/// A writer I/O figure more than this over its budget fails the check: they are page counts that
/// repeat to the byte (spread 0-0.35 % over eighteen runs), so one more index leaf a write
/// (about +10 % of a delete's WAL bytes) must not fit in the margin.
const IO_OVER_BUDGET: f64 = 0.05;
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

/// What the guard measures of an operation: the server's instructions, and the I/O system calls
/// of its SQLite writer thread, which callgrind's count does not see (see the module's header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Figure {
    Instructions,
    WriterWriteCalls,
    WriterWriteBytes,
    WriterReadCalls,
}

impl Figure {
    const ALL: [Figure; 4] =
        [Figure::Instructions, Figure::WriterWriteCalls, Figure::WriterWriteBytes, Figure::WriterReadCalls];
    const WRITER: [Figure; 3] = [Figure::WriterWriteCalls, Figure::WriterWriteBytes, Figure::WriterReadCalls];

    /// The table of the budget file its budgets are in (the instructions' are its top-level keys).
    fn table(self) -> Option<&'static str> {
        match self {
            Figure::Instructions => None,
            Figure::WriterWriteCalls => Some("writer_write_calls"),
            Figure::WriterWriteBytes => Some("writer_write_bytes"),
            Figure::WriterReadCalls => Some("writer_read_calls"),
        }
    }

    /// What it counts, in words.
    fn unit(self) -> &'static str {
        match self {
            Figure::Instructions => "instructions",
            Figure::WriterWriteCalls => "writer write calls",
            Figure::WriterWriteBytes => "writer bytes written",
            Figure::WriterReadCalls => "writer read calls",
        }
    }

    /// How far over its budget the figure may measure before the check fails.
    fn allowed_over(self) -> f64 {
        match self {
            Figure::Instructions => OVER_BUDGET,
            Figure::WriterWriteCalls | Figure::WriterWriteBytes | Figure::WriterReadCalls => IO_OVER_BUDGET,
        }
    }

    /// A per-operation figure as printed: system calls with two decimals (a few a request), the
    /// others in whole units.
    fn show(self, value: f64) -> String {
        match self {
            Figure::WriterWriteCalls | Figure::WriterReadCalls => format!("{value:.2}"),
            Figure::Instructions | Figure::WriterWriteBytes => thousands(value.round() as u64),
        }
    }
}

/// The budget file: every operation's instructions as a top-level `key = instructions`, and
/// writer I/O budgets in the tables `[writer_write_calls]`, `[writer_write_bytes]` and
/// `[writer_read_calls]` for the operations that have one.
struct Budgets(BTreeMap<(Figure, &'static str), f64>);

impl Budgets {
    fn read(path: &Path) -> anyhow::Result<Budgets> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the budgets {}: {e} (run from the repository root)", path.display())
        })?;
        Budgets::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<Budgets> {
        let table: toml::Table = toml::from_str(text)?;
        let operation = |key: &str| {
            OPERATIONS
                .iter()
                .find(|o| o.key == key)
                .map(|o| o.key)
                .ok_or_else(|| anyhow::anyhow!("{key:?} is no operation the guard measures"))
        };
        let budget = |figure: Figure, key: &str, value: &toml::Value| -> anyhow::Result<f64> {
            let number = match value {
                toml::Value::Integer(n) => *n as f64,
                toml::Value::Float(x) if figure != Figure::Instructions => *x,
                _ if figure == Figure::Instructions => {
                    anyhow::bail!("{key}: a budget of instructions is a whole number, not {value}")
                }
                _ => anyhow::bail!("{key}: a budget of {} is a number, not {value}", figure.unit()),
            };
            anyhow::ensure!(number.is_finite() && number >= 0.0, "{key}: the budget {value} is below zero");
            Ok(number)
        };
        let mut budgets = BTreeMap::new();
        for (key, value) in &table {
            if let toml::Value::Table(inner) = value {
                let Some(figure) = Figure::WRITER.into_iter().find(|f| f.table() == Some(key.as_str())) else {
                    anyhow::bail!(
                        "[{key}] is no figure the guard measures (it measures {:?})",
                        Figure::WRITER.map(|f| f.table())
                    );
                };
                for (op, value) in inner {
                    budgets.insert((figure, operation(op)?), budget(figure, &format!("{key}.{op}"), value)?);
                }
            } else {
                budgets.insert((Figure::Instructions, operation(key)?), budget(Figure::Instructions, key, value)?);
            }
        }
        for op in &OPERATIONS {
            anyhow::ensure!(
                budgets.contains_key(&(Figure::Instructions, op.key)),
                "no instruction budget for {:?}",
                op.key
            );
        }
        Ok(Budgets(budgets))
    }

    fn get(&self, figure: Figure, op: &Operation) -> Option<f64> {
        self.0.get(&(figure, op.key)).copied()
    }
}

pub async fn run(args: &BenchArgs, work: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(args.engine == "sqlite", "--instructions measures the SQLite engine only");
    anyhow::ensure!(
        !cfg!(debug_assertions),
        "--instructions counts a release build: cargo build --release, then target/release/kafka-tasks"
    );
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let budgets = Budgets::read(&args.budgets)?;
    for tool in ["valgrind", "callgrind_control"] {
        let found = tokio::process::Command::new(tool).arg("--version").output().await;
        anyhow::ensure!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} not found: install valgrind (scripts/perf-guard.sh does)"
        );
    }
    let started = Instant::now();
    let mut runs: Vec<Vec<Measured>> = Vec::new();
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
            // No pipe reads and writes by every thread at each switch in the writer's I/O counters.
            "--fair-sched=yes".into(),
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

/// One operation's figures in one run: per request, or per task for the engine.
#[derive(Clone, Copy, Debug, Default)]
struct Measured {
    instructions: f64,
    writer: IoCounters,
    /// Requests or tasks of the phase.
    n: usize,
}

impl Measured {
    fn get(&self, figure: Figure) -> f64 {
        let total = match figure {
            Figure::Instructions => self.instructions,
            Figure::WriterWriteCalls => self.writer.write_calls as f64,
            Figure::WriterWriteBytes => self.writer.write_bytes as f64,
            Figure::WriterReadCalls => self.writer.read_calls as f64,
        };
        if self.n == 0 { 0.0 } else { total / self.n as f64 }
    }
}

/// The two views of the server a phase is measured with: callgrind's count of its instructions,
/// and the kernel's I/O counters of its SQLite writer thread.
struct Meter {
    callgrind: Callgrind,
    writer: ThreadIo,
    phases: BTreeMap<&'static str, Measured>,
}

impl Meter {
    /// The thread that owns the store's one write connection (`storage::sqlite`): every WAL
    /// frame is written by it, and every page a write needs and SQLite's cache lacks is read by it.
    const WRITER_THREAD: &'static str = "sqlite-writer";

    /// Zeroes the instruction counters, then reads the writer's I/O counters: the phase starts.
    /// In this order because `callgrind_control` reaches the process through valgrind's
    /// gdbserver, which may answer on any of the process's threads, the writer's too.
    async fn start(&self) -> anyhow::Result<IoCounters> {
        self.callgrind.zero().await?;
        self.writer.read()
    }

    /// Ends the phase `key` of `n` requests or tasks that `start` began: the writer's I/O
    /// counters first, then the dump (which writes its file from whatever thread answers it).
    async fn stop(&mut self, key: &'static str, started: IoCounters, n: usize) -> anyhow::Result<()> {
        let writer = self.writer.read()?.since(started);
        let instructions = self.callgrind.dump(key).await? as f64;
        self.phases.insert(key, Measured { instructions, writer, n });
        Ok(())
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

/// One run of the workload on a fresh store and server: the figures of each operation, in the
/// order of [`OPERATIONS`].
async fn measure(dir: &Path) -> anyhow::Result<Vec<Measured>> {
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
    let pid = server.child.id();
    let callgrind = Callgrind { pid: pid.to_string(), dir: dir.to_owned() };
    let mut meter = Meter { callgrind, writer: ThreadIo::find(pid, Meter::WRITER_THREAD)?, phases: BTreeMap::new() };
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
    let reads: [(&'static str, MakeCall); 5] = [
        ("healthz", Box::new(|_| get("/healthz".into()))),
        ("show", Box::new(|i| get(format!("{hot_base}/{}", sample[i * 7 % sample.len()])))),
        ("progress", Box::new(|i| get(format!("{hot_base}/{}/progress", sample[i * 7 % sample.len()])))),
        ("list_page_1", Box::new(|_| get(format!("{hot_base}?start=1&limit=10")))),
        ("list_deep", Box::new(|_| get(format!("{hot_base}?start={deep_start}&limit=10")))),
    ];
    for (key, make) in &reads {
        client.send_all((0..WARM_UP).map(make), 200).await?;
        wal.empty()?;
        let started = meter.start().await?;
        client.send_all((0..REQUESTS).map(make), 200).await?;
        meter.stop(key, started, REQUESTS).await?;
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
        let started = meter.start().await?;
        client.send_all((0..SIGNED_REQUESTS).map(show), 200).await?;
        meter.stop(key, started, SIGNED_REQUESTS).await?;
    }
    for (key, algorithm, fresh) in [
        ("show_ecdsa_p256_new_key", Algorithm::EcdsaP256, &new_keys[..NEW_KEYS]),
        ("show_sm2_sm3_new_key", Algorithm::Sm2, &new_keys[NEW_KEYS..]),
    ] {
        let started = meter.start().await?;
        for (i, k) in fresh.iter().enumerate() {
            client.target = Target {
                access_key: k.access_key.clone(),
                secret_key: k.secret_key.clone(),
                algorithm,
                ..main_key.clone()
            };
            client.send(&show(i), 200).await?;
        }
        meter.stop(key, started, NEW_KEYS).await?;
    }
    client.target = main_key;

    // Every delete removes another finished task of the other instances.
    let delete = |path: &String| Call { method: "DELETE", path_and_query: path.clone(), body: None };
    client.send_all(victims[..WARM_UP].iter().map(delete), 204).await?;
    wal.hold()?;
    let started = meter.start().await?;
    client.send_all(victims[WARM_UP..needed_victims].iter().map(delete), 204).await?;
    meter.stop("delete", started, REQUESTS).await?;
    wal.release()?;

    // One auto-topic toggle after another on one instance, each run to SUCCESS before the next.
    let toggle = |instance: &kafka_tasks::domain::InstanceId, on: bool| Call {
        method: "POST",
        path_and_query: format!("/v2/{p}/instances/{instance}/autotopic"),
        body: Some(json!({ "enable_auto_topic": on }).to_string()),
    };
    let mut started = IoCounters::default();
    for i in 0..ENGINE_WARM_UP + ENGINE_TASKS {
        if i == ENGINE_WARM_UP {
            wal.hold()?;
            started = meter.start().await?;
        }
        client.send(&toggle(engine_instance, i % 2 == 0), 200).await?;
        ended.wait_for(i + 1).await?;
    }
    meter.stop("engine_over_http", started, ENGINE_TASKS).await?;
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
    let started = meter.start().await?;
    client.send(&toggle(trigger_instance, true), 200).await?;
    ended.wait_for(submitted + DRAIN_TASKS + 1).await?;
    meter.stop("engine_drain", started, DRAIN_TASKS + 1).await?;
    wal.release()?;
    drop(server);

    Ok(OPERATIONS.iter().map(|op| meter.phases.get(op.key).copied().unwrap_or_default()).collect())
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

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_unstable_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if !n.is_multiple_of(2) => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// (max - min) / mean.
fn spread(v: &[f64]) -> f64 {
    let (Some(min), Some(max)) = (v.iter().copied().reduce(f64::min), v.iter().copied().reduce(f64::max)) else {
        return 0.0;
    };
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    if mean > 0.0 { (max - min) / mean } else { 0.0 }
}

/// One figure of one operation over the runs, beside its budget.
struct Row {
    op: &'static Operation,
    figure: Figure,
    runs: Vec<f64>,
    /// The median of the runs: what is checked.
    measured: f64,
    budget: Option<f64>,
}

impl Row {
    /// How far over (above 0) or under its budget the figure is; none without a budget.
    fn vs_budget(&self) -> Option<f64> {
        let budget = self.budget?;
        Some(if budget > 0.0 {
            self.measured / budget - 1.0
        } else if self.measured > 0.0 {
            f64::INFINITY
        } else {
            0.0
        })
    }

    fn over(&self) -> bool {
        self.vs_budget().is_some_and(|r| r > self.figure.allowed_over())
    }

    fn under(&self) -> bool {
        self.vs_budget().is_some_and(|r| r < -UNDER_BUDGET)
    }

    /// The operation, the figure and its budget, in a sentence.
    fn said(&self) -> String {
        let ratio = self.vs_budget().unwrap_or(0.0) * 100.0;
        let budget = self.budget.map_or_else(|| "none".into(), |b| self.figure.show(b));
        let table = self.figure.table().map_or_else(String::new, |t| format!(" in [{t}]"));
        format!(
            "{} ({}) measures {} {} per {}, budget {budget}{table} ({ratio:+.1} %)",
            self.op.name,
            self.op.key,
            self.figure.show(self.measured),
            self.figure.unit(),
            self.op.per.as_str()
        )
    }
}

/// Every figure of every operation: the instructions in the order of [`OPERATIONS`], then the
/// writer's I/O.
fn rows(budgets: &Budgets, runs: &[Vec<Measured>]) -> Vec<Row> {
    let mut rows = Vec::new();
    for figure in Figure::ALL {
        for (i, op) in OPERATIONS.iter().enumerate() {
            let figures: Vec<f64> = runs.iter().map(|r| r.get(i).map_or(0.0, |m| m.get(figure))).collect();
            rows.push(Row { op, figure, measured: median(&figures), runs: figures, budget: budgets.get(figure, op) });
        }
    }
    rows
}

/// Hints at the budgets far above what is measured, and fails naming every figure over its budget.
fn check(rows: &[Row], file: &str) -> anyhow::Result<()> {
    for row in rows.iter().filter(|r| r.under()) {
        eprintln!("hint: {}, more than {:.0} % under: lower it in {file}", row.said(), UNDER_BUDGET * 100.0);
    }
    let mut over = Vec::new();
    for row in rows.iter().filter(|r| r.over()) {
        let said = row.said();
        eprintln!("OVER BUDGET: {said}, allowed +{:.0} %", row.figure.allowed_over() * 100.0);
        over.push(said);
    }
    anyhow::ensure!(
        over.is_empty(),
        "{} figure{} over budget ({}); if the cost is intended, raise the budget in {file} in a commit that says why",
        over.len(),
        if over.len() == 1 { " is" } else { "s are" },
        over.join("; ")
    );
    Ok(())
}

fn report(args: &BenchArgs, budgets: &Budgets, runs: &[Vec<Measured>], took: Duration) -> anyhow::Result<()> {
    let rows = rows(budgets, runs);
    if args.json {
        let json_of = |row: &Row| {
            json!({
                "runs": row.runs, "measured": row.measured, "budget": row.budget, "vs_budget": row.vs_budget(),
                "spread": spread(&row.runs),
            })
        };
        let ops: Vec<_> = OPERATIONS
            .iter()
            .map(|op| {
                let of = |figure: Figure| rows.iter().find(|r| r.figure == figure && r.op.key == op.key);
                let mut entry = json!({ "operation": op.key, "name": op.name, "per": op.per.as_str() });
                if let Some(row) = of(Figure::Instructions) {
                    // Whole instructions, as the budgets are.
                    entry["runs"] = json!(row.runs.iter().map(|r| r.round() as u64).collect::<Vec<_>>());
                    entry["instructions"] = json!(row.measured.round() as u64);
                    entry["budget"] = json!(row.budget);
                    entry["vs_budget"] = json!(row.vs_budget());
                    entry["spread"] = json!(spread(&row.runs));
                }
                for figure in Figure::WRITER {
                    if let (Some(row), Some(table)) = (of(figure), figure.table()) {
                        entry[table] = json_of(row);
                    }
                }
                entry
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
        let instructions: Vec<&Row> = rows.iter().filter(|r| r.figure == Figure::Instructions).collect();
        print_table(&instructions, runs.len(), false);
        println!(
            "\nthe SQLite writer thread's I/O system calls per request (per task for the engine), from its \
             /proc/<pid>/task/<tid>/io (a WAL frame is two writes of 4,120 bytes in all); operations whose writer \
             did none and that have no budget left out"
        );
        let did_io = |key: &str| {
            rows.iter().any(|o| o.op.key == key && o.figure != Figure::Instructions && o.runs.iter().any(|v| *v > 0.0))
        };
        let mut writer: Vec<&Row> = rows
            .iter()
            .filter(|r| r.figure != Figure::Instructions && (r.budget.is_some() || did_io(r.op.key)))
            .collect();
        writer.sort_by_key(|r| (OPERATIONS.iter().position(|o| o.key == r.op.key), r.figure));
        print_table(&writer, runs.len(), true);
    }
    check(&rows, &args.budgets.display().to_string())
}

/// The table of some figures: each run's when there are several, their spread, the median,
/// the budget and how far the median is from it.
fn print_table(rows: &[&Row], runs: usize, figure_column: bool) {
    print!("{:<34} {:>8}", "operation", "per");
    if figure_column {
        print!(" {:<21}", "figure");
    }
    if runs > 1 {
        for n in 1..=runs {
            print!(" {:>12}", format!("run {n}"));
        }
        print!(" {:>8}", "spread");
    }
    println!(" {:>12} {:>12} {:>10}", "measured", "budget", "vs budget");
    let mut last = "";
    for row in rows {
        let name = if row.op.key == last { "" } else { row.op.name };
        last = row.op.key;
        print!("{name:<34} {:>8}", row.op.per.as_str());
        if figure_column {
            print!(" {:<21}", row.figure.unit());
        }
        if runs > 1 {
            for f in &row.runs {
                print!(" {:>12}", row.figure.show(*f));
            }
            print!(" {:>7.2}%", spread(&row.runs) * 100.0);
        }
        let budget = row.budget.map_or_else(|| "-".into(), |b| row.figure.show(b));
        let vs = row.vs_budget().map_or_else(|| "-".into(), |r| format!("{:+.1}%", r * 100.0));
        println!(" {:>12} {budget:>12} {vs:>10}", row.figure.show(row.measured));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!((spread(&[90.0, 100.0, 110.0]) - 0.2).abs() < 1e-9);
        assert_eq!(spread(&[0.0, 0.0]), 0.0);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(Figure::WriterWriteCalls.show(31.114), "31.11");
        assert_eq!(Figure::WriterWriteBytes.show(62_041.4), "62,041");
    }

    fn committed_budgets() -> Budgets {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/instructions.toml");
        Budgets::read(&path).expect("the committed budgets parse")
    }

    #[test]
    fn the_committed_budgets_name_every_operation() {
        let budgets = committed_budgets();
        for op in &OPERATIONS {
            assert!(budgets.get(Figure::Instructions, op).is_some(), "{}", op.key);
        }
        // The writes have budgets for their writer's bytes, and the ones on seeded tasks for its reads.
        let budgeted = |figure: Figure, key: &str| {
            OPERATIONS.iter().find(|o| o.key == key).and_then(|op| budgets.get(figure, op)).is_some()
        };
        for key in ["delete", "engine_over_http", "engine_drain"] {
            assert!(budgeted(Figure::WriterWriteBytes, key), "{key}");
        }
        for key in ["delete", "engine_drain"] {
            assert!(budgeted(Figure::WriterReadCalls, key), "{key}");
        }
    }

    /// One run in which every operation measures exactly its instruction budget, and the writer of
    /// each has done `writer` in all over its phase.
    fn one_run(budgets: &Budgets, writer: impl Fn(&str) -> IoCounters) -> Vec<Vec<Measured>> {
        let n = 100;
        vec![
            OPERATIONS
                .iter()
                .map(|op| Measured {
                    instructions: budgets.get(Figure::Instructions, op).unwrap_or(0.0) * n as f64,
                    writer: writer(op.key),
                    n,
                })
                .collect(),
        ]
    }

    /// The delete's writer writing 15 WAL frames a request (two calls each), nothing else writing.
    fn delete_writes(key: &str) -> IoCounters {
        if key == "delete" {
            IoCounters { write_calls: 3_000, write_bytes: 6_180_000, read_calls: 50, read_bytes: 204_800 }
        } else {
            IoCounters::default()
        }
    }

    const INSTRUCTIONS_ONLY: &str = "healthz = 55_000\nshow = 196_000\nprogress = 196_000\nlist_page_1 = 368_000\n\
        list_deep = 834_000\ndelete = 430_000\nengine_over_http = 702_000\nengine_drain = 138_000\n\
        show_hmac_sm3 = 194_000\nshow_ecdsa_p256 = 2_684_000\nshow_sm2_sm3 = 3_329_000\nshow_v11 = 232_000\n\
        show_ecdsa_p256_new_key = 5_075_000\nshow_sm2_sm3_new_key = 5_881_000\n";

    #[test]
    fn a_writer_io_budget_far_below_the_measured_figure_fails_naming_the_operation_and_both_figures() {
        let text = format!("{INSTRUCTIONS_ONLY}[writer_write_bytes]\ndelete = 4_120\n");
        let budgets = Budgets::parse(&text).expect("parses");
        let runs = one_run(&budgets, delete_writes);
        let Err(failed) = check(&rows(&budgets, &runs), "budgets.toml") else {
            panic!("a delete writing 61,800 bytes a request passed a budget of 4,120")
        };
        let said = failed.to_string();
        assert!(said.starts_with("1 figure is over budget"), "{said}");
        assert!(
            said.contains("DeleteBackgroundTask (delete) measures 61,800 writer bytes written per request"),
            "{said}"
        );
        assert!(said.contains("budget 4,120 in [writer_write_bytes]"), "{said}");
        assert!(!said.contains("engine"), "{said}");
    }

    #[test]
    fn writer_io_within_five_percent_of_its_budgets_passes_and_beyond_fails() {
        let within = format!(
            "{INSTRUCTIONS_ONLY}[writer_write_calls]\ndelete = 29\n[writer_write_bytes]\ndelete = 59_000\n\
             [writer_read_calls]\ndelete = 0.5\nengine_drain = 1.5\n"
        );
        let budgets = Budgets::parse(&within).expect("parses");
        let runs = one_run(&budgets, delete_writes);
        // 30 calls against 29 (+3.4 %), 61,800 bytes against 59,000 (+4.7 %), 0.5 reads against
        // 0.5, and a drain that read nothing.
        check(&rows(&budgets, &runs), "budgets.toml").expect("within 5 %");

        // +7.1 %: within the instructions' 10 %, beyond the I/O figures' 5 %.
        let beyond = within.replace("delete = 29", "delete = 28");
        let budgets = Budgets::parse(&beyond).expect("parses");
        let Err(failed) = check(&rows(&budgets, &one_run(&budgets, delete_writes)), "budgets.toml") else {
            panic!("30 write calls passed a budget of 28 (+7.1 %)")
        };
        assert!(failed.to_string().contains("measures 30.00 writer write calls per request, budget 28.00"), "{failed}");
    }

    #[test]
    fn instructions_over_budget_still_fail_naming_the_operation() {
        let budgets = Budgets::parse(INSTRUCTIONS_ONLY).expect("parses");
        let mut runs = one_run(&budgets, |_| IoCounters::default());
        let Some(show) = OPERATIONS.iter().position(|o| o.key == "show") else { panic!("show") };
        runs[0][show].instructions *= 1.2;
        let Err(failed) = check(&rows(&budgets, &runs), "budgets.toml") else { panic!("+20 % passed") };
        assert!(
            failed
                .to_string()
                .contains("ShowBackgroundTask (show) measures 235,200 instructions per request, budget 196,000"),
            "{failed}"
        );
    }

    #[test]
    fn budget_files_that_say_something_else_are_refused() {
        let refused = |text: &str| Budgets::parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused("healthz = 55_000\n").contains("no instruction budget for \"show\""));
        assert!(refused(&format!("{INSTRUCTIONS_ONLY}nonsense = 1\n")).contains("\"nonsense\" is no operation"));
        assert!(
            refused(&format!("{INSTRUCTIONS_ONLY}[writer_iops]\ndelete = 1\n")).contains("[writer_iops] is no figure")
        );
        assert!(
            refused(&format!("{INSTRUCTIONS_ONLY}[writer_write_bytes]\ndelet = 1\n"))
                .contains("\"delet\" is no operation")
        );
        assert!(refused(&format!("{INSTRUCTIONS_ONLY}[writer_read_calls]\ndelete = -1\n")).contains("below zero"));
        assert!(refused(&format!("{INSTRUCTIONS_ONLY}[writer_read_calls]\ndelete = \"1\"\n")).contains("is a number"));
        assert!(refused(&INSTRUCTIONS_ONLY.replace("healthz = 55_000", "healthz = 55.5")).contains("a whole number"));
    }
}
