// No-op job throughput of graphile-worker, the peer kafka-tasks' engine is compared with.
//
//   node run.mjs --url postgres://postgres@127.0.0.1:5432 --jobs 20000 --concurrency 64
//
// Creates a fresh database on the server, lets graphile-worker install its schema, queues the
// jobs in one batch, then runs a worker pool until every job has completed, and prints one JSON
// line: {"peer":"graphile-worker","jobs":N,"seconds":S,"jobs_per_s":R}. The database is dropped.
import { Logger, run, makeWorkerUtils } from "graphile-worker";
import pg from "pg";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const server = arg("url", "postgres://postgres@127.0.0.1:5432");
const jobs = Number(arg("jobs", "20000"));
const concurrency = Number(arg("concurrency", "64"));
const dbName = `kt_peer_gw_${process.pid}_${Date.now()}`;

const admin = new pg.Client({ connectionString: `${server}/postgres` });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const connectionString = `${server}/${dbName}`;

// Per-job log lines would cost more than the jobs.
const logger = new Logger(() => () => {});

// One pool for the utilities and the runner, closed before the database is dropped.
const pool = new pg.Pool({ connectionString, max: concurrency + 4 });
pool.on("error", () => {});
pool.on("connect", (client) => client.on("error", () => {}));

try {
  const utils = await makeWorkerUtils({ pgPool: pool, logger });
  await utils.migrate();
  // Queue in batches (one statement each), before the clock starts.
  const batch = 5000;
  for (let i = 0; i < jobs; i += batch) {
    const spec = Array.from({ length: Math.min(batch, jobs - i) }, () => ({ identifier: "noop", payload: {} }));
    await utils.addJobs(spec);
  }
  await utils.release();

  let done = 0;
  let finished;
  const allDone = new Promise((resolve) => (finished = resolve));
  const started = process.hrtime.bigint();
  const runner = await run({
    pgPool: pool,
    concurrency,
    noHandleSignals: true,
    pollInterval: 100,
    logger,
    taskList: {
      noop: async () => {
        done += 1;
        if (done === jobs) finished();
      },
    },
  });
  await allDone;
  // Completion is a DELETE of the job row; wait until the queue is empty so every job is settled.
  const check = new pg.Client({ connectionString });
  await check.connect();
  for (;;) {
    const { rows } = await check.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
    if (rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await check.end();
  await runner.stop();
  await pool.end();
  console.log(JSON.stringify({ peer: "graphile-worker", jobs, concurrency, seconds, jobs_per_s: jobs / seconds }));
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
}
