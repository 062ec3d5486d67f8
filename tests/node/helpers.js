'use strict';
// Starts the real kafka-tasks binary on a fresh SQLite database and builds official Node.js SDK
// clients against it. The first admin key is the one `serve` writes to initial-credential.json
// beside the master key file on an empty database.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const core = require('@huaweicloud/huaweicloud-sdk-core');
const kafka = require('@huaweicloud/huaweicloud-sdk-kafka');

const ROOT = path.resolve(__dirname, '..', '..');
const BINARY = process.env.KAFKA_TASKS_BIN || path.join(ROOT, 'target', 'debug', 'kafka-tasks');
const PROJECT = '0123456789abcdef0123456789abcdef';
const OTHER_PROJECT = 'fedcba9876543210fedcba9876543210';

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * The SDK's HTTP client logs every error answer with its whole request (headers included) at
 * ERROR level, and offers no setting for it; the tests expect many error answers. NODE_SDK_LOG=1
 * keeps those logs.
 */
function quiet(client) {
  const http = client.hcClient && client.hcClient.httpClient;
  if (process.env.NODE_SDK_LOG !== '1' && http && http._logger) http._logger = silent;
}

/**
 * The signing modes the Node SDK offers: SDK-HMAC-SHA256, and derived AK/SK (V11-HMAC-SHA256)
 * when the credentials have a derived predicate. It has no SM3, ECDSA or SM2 signer.
 */
const SIGNING_MODES = ['hmac-sha256', 'v11-hmac-sha256'];
const V11_REGION = 'cn-north-4';
const V11_SERVICE = 'dms';

class Server {
  static async start(...flags) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kafka-tasks-node-'));
    const db = 'sqlite:' + path.join(dir, 'node.db');
    const keyFile = path.join(dir, 'master.key');
    const proc = spawn(BINARY, ['serve', '--listen', '127.0.0.1:0', '--log-format', 'json', '--poll-ms', '20',
      '--database', db, '--master-key-file', keyFile, ...flags], { stdio: ['ignore', 'ignore', 'pipe'] });
    const addr = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('kafka-tasks did not start')), 20000);
      proc.on('exit', (code) => reject(new Error(`kafka-tasks exited with ${code}`)));
      readline.createInterface({ input: proc.stderr }).on('line', (line) => {
        let rec;
        try { rec = JSON.parse(line); } catch { return; }
        if (rec.message === 'listening') {
          clearTimeout(timer);
          resolve(rec.addr);
        }
      });
    });
    const s = new Server();
    Object.assign(s, { dir, db, keyFile, proc, url: `http://${addr}` });
    s.admin = JSON.parse(fs.readFileSync(path.join(dir, 'initial-credential.json'), 'utf8'));
    return s;
  }

  /** An access key made with `kafka-tasks credentials create`. */
  credential(user, role = 'admin', project = PROJECT) {
    const out = execFileSync(BINARY, ['credentials', 'create', '--project-id', project, '--user-name', user,
      '--role', role, '--database', this.db, '--master-key-file', this.keyFile], { encoding: 'utf8' });
    return JSON.parse(out);
  }

  /** Runs an operator subcommand of the binary on this server's database (e.g. `kernels add`). */
  adminCommand(...args) {
    return execFileSync(BINARY, [...args, '--database', this.db],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** The SDK signing in this server's `signing` mode (one of SIGNING_MODES). */
  client(cred = this.admin, projectId = cred.project_id) {
    const credentials = new core.BasicCredentials()
      .withAk(cred.access_key).withSk(cred.secret_key).withProjectId(projectId);
    let builder = kafka.KafkaClient.newBuilder().withCredential(credentials);
    if (this.signing === 'v11-hmac-sha256') {
      // Derived AK/SK: the region's id and the builder's service name make the credential scope
      // (the server's defaults, `serve --signing-region/--signing-service`); the Kafka client
      // names no service of its own, so the caller does.
      credentials.withDerivedPredicate(() => true);
      builder = builder.withRegion(new core.Region(V11_REGION, this.url)).withDerivedAuthServiceName(V11_SERVICE);
    } else {
      builder = builder.withEndpoint(this.url);
    }
    const client = builder.build();
    quiet(client);
    return client;
  }

  stop() {
    this.proc.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value, then returns it. */
async function wait(check, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('condition never held');
    await sleep(20);
  }
}

/** The rejection of `promise`, which must reject. */
async function refused(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('the call was expected to fail');
}

module.exports = { Server, wait, refused, sleep, kafka, core, PROJECT, OTHER_PROJECT, SIGNING_MODES };
