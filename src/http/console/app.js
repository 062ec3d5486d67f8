// The kafka-tasks console: signs requests in the browser (SDK-HMAC-SHA256 with WebCrypto, as the
// official SDKs do) or sends a token, and drives the same public API as every other client.
"use strict";

const TERMINAL = ["SUCCESS", "FAILED", "CANCELLED"];
const RANGES = { hour: 3600e3, day: 86400e3, week: 7 * 86400e3 };
const STORE = "kafka-tasks-console";
const SCHED_PAGE = 100; // scheduled tasks per page (the API's largest page)
const $ = (id) => document.getElementById(id);

const state = {
  auth: null, // {project, method: "aksk"|"token", ak, sk} or {project, method, token}
  instances: [],
  instance: null,
  tab: "bg",
  start: 1,
  total: 0,
  schedStart: 1, // the first scheduled task on the page (1-based, as the API counts)
  detail: null, // task id shown in the detail panel
  timer: null,
  detailTimer: null,
  live: null, // the event stream being followed: {abort: AbortController, instance, lastId}
  liveReload: null,
  offline: false, // the last call got no answer at all
  canChange: null, // whether this key may delete, cancel, reschedule: null until known
  roleProbe: null, // the look at a task's run under way, if any
  retry: null,
};

// ---------- SDK-HMAC-SHA256 ----------

/** RFC 3986: unreserved characters stay, the rest is percent-encoded with uppercase hex. */
function enc(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

function canonicalUri(path) {
  const out = path.split("/").map((seg) => enc(decodeURIComponent(seg))).join("/");
  return out.endsWith("/") ? out : out + "/";
}

function canonicalQuery(pairs) {
  const sorted = pairs.slice().sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return sorted.map(([k, v]) => `${enc(k)}=${enc(v)}`).join("&");
}

const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const utf8 = (s) => new TextEncoder().encode(s);

async function sha256Hex(data) {
  return hex(await crypto.subtle.digest("SHA-256", data));
}

async function hmacHex(secret, message) {
  const key = await crypto.subtle.importKey("raw", utf8(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hex(await crypto.subtle.sign("HMAC", key, utf8(message)));
}

/** `20240102T030405Z` */
function sdkDate(d) {
  return d.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/** The hex signature of a request; `headers` holds every signed header (lowercase names). */
async function signature(method, path, pairs, headers, body, sk) {
  const names = Object.keys(headers).sort();
  const canonical = [
    method,
    canonicalUri(path),
    canonicalQuery(pairs),
    names.map((n) => `${n}:${String(headers[n]).trim()}\n`).join(""),
    names.join(";"),
    await sha256Hex(utf8(body)),
  ].join("\n");
  const toSign = `SDK-HMAC-SHA256\n${headers["x-sdk-date"]}\n${await sha256Hex(utf8(canonical))}`;
  return hmacHex(sk, toSign);
}

/** Adds `X-Sdk-Date` and `Authorization` to `headers` (a plain object with lowercase names). */
async function sign(method, path, pairs, headers, body, ak, sk) {
  headers["x-sdk-date"] = sdkDate(new Date());
  // Host is signed as the browser will send it; a script cannot set it, so it is left out after.
  const signed = { ...headers, host: location.host };
  const names = Object.keys(signed).sort().join(";");
  const sig = await signature(method, path, pairs, signed, body, sk);
  headers["authorization"] = `SDK-HMAC-SHA256 Access=${ak}, SignedHeaders=${names}, Signature=${sig}`;
}

class ApiError extends Error {}

// ---------- hints ----------

/** The CLI's hint table (crates/client/src/hints.rs), served by the binary as /console/hints.json: one
 * table, so that the page says under an error what the CLI says. Loaded once; without it, errors
 * show without a hint. */
let hints = null;
function loadHints() {
  if (!hints) {
    hints = fetch("/console/hints.json", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : []))
      .catch(() => { hints = null; return []; });
  }
  return hints;
}

/** The command a call is, where the table tells commands apart (as the CLI's `Op`). */
function opOf(method, path) {
  if (/\/scheduled-tasks\/[^/]+$/.test(path)) return method === "PUT" ? "reschedule" : method === "DELETE" ? "scheduled-delete" : "any";
  if (method === "DELETE" && /\/tasks\/[^/]+$/.test(path)) return "task-delete";
  return "any";
}

/** The first entry for this code whose message fragment the answer contains, for this command;
 * filled in like the CLI's. */
async function hintFor(method, path, code, message) {
  const table = await loadHints();
  const op = opOf(method, path);
  const h = (Array.isArray(table) ? table : []).find((e) => e.code === code && message.includes(e.message) && (e.op === "any" || e.op === op));
  if (!h) return "";
  const task = (path.match(/\/(?:scheduled-)?tasks\/([^/]+)/) || [])[1] || "";
  const facts = {
    project: state.auth ? state.auth.project : "",
    instance: (path.match(/\/instances\/([^/]+)/) || [])[1] || "",
    task,
    access_key: state.auth && state.auth.ak ? state.auth.ak : "",
  };
  return h.text.replace(/\{(project|instance|task|access_key)\}/g, (_, k) => facts[k]);
}

class Unreachable extends Error {
  constructor() { super("The server is unreachable: nothing here is current. Retrying every few seconds."); }
}

/** Says plainly when the server does not answer (the list and "Signed in" would otherwise look
 * current), retries on its own while it does not, and picks up where it was once it answers. */
function offline(on) {
  if (state.offline === on) return;
  state.offline = on;
  $("offline").hidden = !on;
  $("who").classList.toggle("off", on);
  clearInterval(state.retry);
  if (on) {
    announce("");
    // With an instance shown, its list is what to bring back; before that, any answer will do.
    const probe = () => fetch("/console/favicon.svg", { cache: "no-store" }).then(() => offline(false), () => {});
    state.retry = setInterval(() => (state.instance ? reload() : probe()), 3000);
  } else {
    fail(null);
    announce("Connected again.");
    if (state.instance && !state.live) follow();
  }
}

/** The headers of a call (signed, or with the token) and its query string; `body` is the text
 * sent, signed as sent. */
async function authorized(method, path, query, body = "") {
  const pairs = Object.entries(query || {}).filter(([, v]) => v !== undefined && v !== "").map(([k, v]) => [k, String(v)]);
  const qs = pairs.map(([k, v]) => `${enc(k)}=${enc(v)}`).join("&");
  const headers = { "content-type": "application/json", "x-project-id": state.auth.project };
  if (state.auth.method === "aksk") {
    await sign(method, path, pairs, headers, body, state.auth.ak, state.auth.sk);
  } else {
    headers["x-auth-token"] = state.auth.token;
  }
  return { url: qs ? `${path}?${qs}` : path, headers };
}

/** Calls the API; `query` is an object whose undefined values are left out; `json`, when given,
 * is sent as the JSON body. */
async function api(method, path, query, json) {
  const body = json === undefined ? "" : JSON.stringify(json);
  const { url, headers } = await authorized(method, path, query, body);
  let res;
  try {
    res = await fetch(url, { method, headers, credentials: "omit", cache: "no-store", ...(body ? { body } : {}) });
  } catch {
    // fetch rejects only when no answer came at all: the server is down or the network is.
    offline(true);
    throw new Unreachable();
  }
  offline(false);
  const text = await res.text();
  let answer = null;
  try { answer = text ? JSON.parse(text) : null; } catch { answer = null; }
  if (!res.ok) {
    const id = res.headers.get("x-request-id");
    const what = answer && answer.error_code ? `${answer.error_code}: ${answer.error_msg}` : `HTTP ${res.status}`;
    const err = new ApiError(id ? `${what} (request ${id})` : what);
    err.status = res.status;
    if (answer && answer.error_code) err.hint = await hintFor(method, path, answer.error_code, String(answer.error_msg || ""));
    if (res.status === 403 && answer && answer.error_code === "DMS.00403003") mayChange(false);
    throw err;
  }
  return answer;
}

// ---------- live events ----------

/** Follows the instance's task event stream (Server-Sent Events, read with fetch so that the
 * request can be signed): each event reloads the list (at most every 300 ms) and the open task's
 * detail. The stream is resumed with Last-Event-ID when the server ends it; when the server has
 * no stream or refuses one, the page polls as before (auto-refresh, detail every second). */
async function follow() {
  unfollow();
  if (!state.instance || !state.auth) return;
  const me = { abort: new AbortController(), instance: state.instance.instance_id, lastId: null, failures: 0 };
  state.live = me;
  while (state.live === me) {
    try {
      const { url, headers } = await authorized("GET", `${base()}/tasks/events`);
      headers["accept"] = "text/event-stream";
      if (me.lastId !== null) headers["last-event-id"] = me.lastId;
      const res = await fetch(url, { headers, credentials: "omit", cache: "no-store", signal: me.abort.signal });
      if (!res.ok || !res.body) break;
      me.failures = 0;
      showLive(true);
      await readEvents(res.body.getReader(), me);
    } catch {
      if (state.live !== me) return;
      me.failures += 1;
      if (me.failures > 3) break;
    }
    if (state.live !== me) return;
    // Ended by the server (its lifetime, a restart): resume shortly where it stopped.
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (state.live === me) {
    state.live = null;
    showLive(false);
  }
}

function unfollow() {
  if (state.live) state.live.abort.abort();
  state.live = null;
  showLive(false);
}

function showLive(on) {
  $("live").textContent = on ? "Live" : "Polling";
}

async function readEvents(reader, me) {
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done || state.live !== me) return;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const msg = { id: null, event: "", data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith("id:")) msg.id = line.slice(3).trim();
        else if (line.startsWith("event:")) msg.event = line.slice(6).trim();
        else if (line.startsWith("data:")) msg.data += line.slice(5).trim();
      }
      if (msg.id !== null) me.lastId = msg.id;
      if (msg.event) onEvent(msg);
    }
  }
}

function onEvent(msg) {
  let data = {};
  try { data = JSON.parse(msg.data || "{}"); } catch { data = {}; }
  if (state.detail && (data.task_id === state.detail || msg.event === "missed")) {
    clearTimeout(state.detailTimer);
    refreshDetail(false);
  }
  clearTimeout(state.liveReload);
  state.liveReload = setTimeout(reload, 300);
}

// ---------- formatting ----------

/** `YYYYMMDDHHmmss` in UTC, the API's time filters. */
function dmsTime(d) {
  return d.toISOString().replace(/[-:T]/g, "").slice(0, 14);
}

function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** `+01:00`: the browser's offset from UTC at `d` (daylight saving moves it). */
function offset(d) {
  const m = -d.getTimezoneOffset();
  const p = (n) => String(n).padStart(2, "0");
  return `${m < 0 ? "-" : "+"}${p(Math.floor(Math.abs(m) / 60))}:${p(Math.abs(m) % 60)}`;
}

/** The browser's time zone, e.g. `Europe/Paris`, and its offset now: the pickers' labels. */
function zoneLabel() {
  let name = "";
  try { name = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch { name = ""; }
  const off = `UTC${offset(new Date())}`;
  return name ? `${name}, ${off}` : off;
}

/** One format everywhere, whatever the browser's locale: `2026-12-05 14:47:24 UTC+01:00`, in
 * the browser's zone and saying which. */
function when(value) {
  if (value === undefined || value === null || value === "") return "";
  const d = new Date(value);
  return isNaN(d) ? String(value) : `${localInput(d).replace("T", " ")} UTC${offset(d)}`;
}

/** `when()` for a table cell: the date and the time each kept whole, so that a narrow column
 * breaks between them and nowhere else. */
function whenCell(value) {
  const text = when(value);
  const cut = text.indexOf(" ");
  if (!/^\d{4}-/.test(text) || cut < 0) return text;
  const frag = document.createDocumentFragment();
  frag.append(el("span", { class: "nowrap" }, text.slice(0, cut)), " ", el("span", { class: "nowrap" }, text.slice(cut + 1)));
  return frag;
}

function ago(value) {
  const s = Math.round((Date.now() - new Date(value)) / 1000);
  if (isNaN(s)) return "";
  if (s < 5) return "just now";
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e && k !== "role") e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const badge = (status) => el("span", { class: `badge ${status}` }, status);

function announce(msg) {
  $("announce").textContent = msg || "";
}

function fail(err) {
  if (err instanceof Unreachable) return; // the banner says it, once
  const box = $("error");
  box.textContent = err ? err.message || String(err) : "";
  if (err && err.hint) box.append(el("p", { class: "error-hint" }, `What to do: ${err.hint}`));
}

// ---------- sign-in ----------

function method() {
  return document.querySelector("input[name=method]:checked").value;
}

function showMethod() {
  $("aksk-fields").hidden = method() !== "aksk";
  $("token-fields").hidden = method() !== "token";
}

async function signIn(auth) {
  if (auth.method === "aksk" && !(window.crypto && crypto.subtle)) {
    throw new Error("This browser offers no WebCrypto here (it needs https or localhost): sign in with a token.");
  }
  state.auth = auth;
  const body = await api("GET", `/v2/${auth.project}/instances`);
  sessionStorage.setItem(STORE, JSON.stringify(auth));
  state.instances = body.instances || [];
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = `${auth.method === "aksk" ? auth.ak : "token"} · project ${auth.project}`;
  probeControl().catch(() => {});
  if (!listInstances()) {
    announce("Signed in. This project has no instances.");
    return;
  }
  const remembered = sessionStorage.getItem(STORE + "-instance");
  $("instance").value = state.instances.some((i) => i.instance_id === remembered) ? remembered : state.instances[0].instance_id;
  announce(`Signed in. ${state.instances.length} instance(s).`);
  pickInstance();
}

/** Fills the instance picker from `state.instances`; false when there is none. */
function listInstances() {
  const sel = $("instance");
  sel.replaceChildren(...state.instances.map((i) => el("option", { value: i.instance_id }, instanceLabel(i))));
  if (state.instances.length) return true;
  sel.append(el("option", { value: "" }, "No instances in this project"));
  return false;
}

function signOut() {
  sessionStorage.removeItem(STORE);
  sessionStorage.removeItem(STORE + "-instance");
  sessionStorage.removeItem(STORE + "-view");
  state.auth = null;
  unfollow();
  clearInterval(state.timer);
  clearTimeout(state.detailTimer);
  location.reload();
}

// ---------- instance and tabs ----------

function instanceLabel(i) {
  return `${i.name} (${i.instance_id.slice(0, 8)}…) · ${i.status}`;
}

function showInstance(i) {
  $("instance-status").textContent = `${i.engine || "kafka"} ${i.engine_version || ""} · ${i.status}`;
  const option = Array.from($("instance").options).find((o) => o.value === i.instance_id);
  if (option) option.textContent = instanceLabel(i);
}

/** The instance's status changes with its tasks: refreshed with each reload. */
async function refreshInstance() {
  const id = state.instance.instance_id;
  const fresh = await api("GET", `/v2/${state.auth.project}/instances/${id}`);
  if (!state.instance || state.instance.instance_id !== id || !fresh) return;
  Object.assign(state.instance, fresh);
  showInstance(state.instance);
}

function pickInstance() {
  state.instance = state.instances.find((i) => i.instance_id === $("instance").value) || null;
  if (!state.instance) return;
  sessionStorage.setItem(STORE + "-instance", state.instance.instance_id);
  showInstance(state.instance);
  state.start = 1;
  state.schedStart = 1;
  closeDetail();
  reload();
  follow();
}

function selectTab(tab) {
  state.tab = tab;
  if (tab !== "bg") closeDetail();
  for (const [t, id] of [["bg", "tab-bg"], ["sched", "tab-sched"]]) {
    const on = t === tab;
    $(id).setAttribute("aria-selected", String(on));
    $(id).tabIndex = on ? 0 : -1;
    $(id === "tab-bg" ? "panel-bg" : "panel-sched").hidden = !on;
  }
  reload();
}

function base() {
  return `/v2/${state.auth.project}/instances/${state.instance.instance_id}`;
}

function reload() {
  if (!state.instance) return;
  (state.tab === "bg" ? loadTasks() : loadScheduled()).catch(fail);
  refreshInstance().catch(() => {});
  // The fire counts move with the tasks: the panel, when shown, follows the lists.
  if (!$("control").hidden) loadFaults().catch(() => {});
}

// ---------- role ----------

/** Whether this key may change tasks (delete, cancel, reschedule: the operator role and above)
 * is learnt from an answer the server already gives: a task's run (`…/run`) is for operators and
 * admins, like every change, so a readonly key's probe is refused with DMS.00403003. Until it is
 * known no change button is drawn; a 403 on any change settles it too. */
async function learnRole(taskId) {
  if (state.canChange !== null || !taskId) return;
  // One look at a time: lists loading at once (a quick change of instance) share it.
  if (!state.roleProbe) {
    state.roleProbe = api("GET", `${base()}/tasks/${taskId}/run`)
      .then(() => mayChange(true), (e) => {
        if (e instanceof Unreachable) throw e;
        // 403 has settled it already (in api); anything else leaves it to the server, later.
      })
      .finally(() => { state.roleProbe = null; });
  }
  await state.roleProbe;
}

function mayChange(yes) {
  if (state.canChange === yes) return;
  const was = state.canChange;
  state.canChange = yes;
  $("role").textContent = yes ? "" : "read-only";
  $("role").hidden = yes;
  if (was !== null && state.instance) reload(); // learnt late: redraw without the buttons
}

/** Change buttons are drawn unless the key is known to be readonly. */
const changes = () => state.canChange !== false;

// ---------- background tasks ----------

function timeRange() {
  const r = $("range").value;
  if (RANGES[r]) return { begin_time: dmsTime(new Date(Date.now() - RANGES[r])) };
  if (r === "custom") {
    const from = $("from").value ? new Date($("from").value) : null;
    const to = $("to").value ? new Date($("to").value) : null;
    return { begin_time: from && !isNaN(from) ? dmsTime(from) : undefined, end_time: to && !isNaN(to) ? dmsTime(to) : undefined };
  }
  return {};
}

async function loadTasks() {
  const limit = Number($("limit").value);
  const body = await api("GET", `${base()}/tasks`, { start: state.start, limit, ...timeRange() });
  if (body.tasks.length) await learnRole(body.tasks[0].id);
  fail(null);
  state.total = Number(body.task_count);
  const rows = body.tasks.map((t) =>
    el("tr", { class: t.id === state.detail ? "current" : "", "data-task": t.id },
      el("td", { "data-label": "Task" }, t.name, el("span", { class: "id" }, t.id)),
      el("td", { "data-label": "Status" }, badge(t.status)),
      el("td", { "data-label": "Progress", class: "pct", "data-pct": t.id }, TERMINAL.includes(t.status) ? "" : "…"),
      el("td", { "data-label": "Started by" }, t.user_name),
      el("td", { "data-label": "Created", title: t.created_at }, whenCell(t.created_at), el("span", { class: "id" }, ago(t.created_at))),
      // A finished record changes no more: its last update is when it ended.
      el("td", { "data-label": "Ended", class: "ended", title: TERMINAL.includes(t.status) ? t.updated_at : "" }, TERMINAL.includes(t.status) ? whenCell(t.updated_at) : ""),
      el("td", { class: "actions" },
        el("button", { type: "button", class: "secondary small", onclick: () => openDetail(t.id), "aria-label": `Details of ${t.name} ${t.id}` }, "Details"),
        changes() && TERMINAL.includes(t.status)
          ? el("button", { type: "button", class: "secondary small", onclick: () => deleteTask(t), "aria-label": `Delete ${t.name} ${t.id}` }, "Delete")
          : null)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "No tasks in this range.")));
  $("tasks").replaceChildren(...rows);
  showProgress(body.tasks.filter((t) => !TERMINAL.includes(t.status)));
  const first = body.tasks.length ? state.start : 0;
  const last = state.start - 1 + body.tasks.length;
  $("count").textContent = `${first}–${last} of ${state.total} tasks`;
  $("prev").disabled = state.start <= 1;
  $("next").disabled = last >= state.total;
}

/** The percentage of each running task on the page (one `…/progress` call each: only the tasks
 * still running, a handful at most). */
function showProgress(running) {
  for (const t of running) {
    api("GET", `${base()}/tasks/${t.id}/progress`).then((p) => {
      const cell = document.querySelector(`#tasks td[data-pct="${CSS.escape(t.id)}"]`);
      if (!cell) return;
      const pct = Math.max(0, Math.min(100, Number(p.progress_percentage) || 0));
      const bar = el("span", { class: "bar mini", role: "progressbar", "aria-label": `Progress of ${t.name}`, "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct) }, el("span", { class: "fill" }));
      bar.firstChild.style.width = `${pct}%`;
      cell.replaceChildren(bar, el("span", { class: "pct-text" }, `${pct}%`));
    }).catch(() => {});
  }
}

function confirmDialog(text, yes) {
  return new Promise((resolve) => {
    const d = $("confirm");
    $("confirm-text").textContent = text;
    $("confirm-yes").textContent = yes;
    const done = (v) => { d.close(); resolve(v); };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    d.oncancel = () => resolve(false);
    d.showModal();
    $("confirm-no").focus();
  });
}

async function deleteTask(t) {
  if (!(await confirmDialog(`Delete the ${t.status} task ${t.name} (${t.id})? This cannot be undone.`, "Delete"))) return;
  try {
    await api("DELETE", `${base()}/tasks/${t.id}`);
    if (state.detail === t.id) closeDetail();
    announce(`Task ${t.id} deleted.`);
    await loadTasks();
  } catch (e) { fail(e); }
}

// ---------- task detail ----------

async function openDetail(id) {
  state.detail = id;
  clearTimeout(state.detailTimer);
  $("detail").hidden = false;
  for (const tr of document.querySelectorAll("#tasks tr")) tr.classList.toggle("current", tr.dataset.task === id);
  await refreshDetail(true);
}

function closeDetail() {
  state.detail = null;
  clearTimeout(state.detailTimer);
  $("detail").hidden = true;
  for (const tr of document.querySelectorAll("#tasks tr.current")) tr.classList.remove("current");
}

function facts(dl, entries) {
  dl.replaceChildren(...entries.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

/** A failed task's reason and what to do, from the task's run (`…/run`: not in the DMS record).
 * A key whose role may not read it is told so; a server without it shows nothing. */
async function showWhy(id, status) {
  const box = $("detail-why");
  if (status !== "FAILED") { box.hidden = true; return; }
  let entries;
  try {
    const run = await api("GET", `${base()}/tasks/${id}/run`);
    const f = run.failure;
    if (f) entries = [["Step", f.step], ["Reason", f.reason], ["What to do", f.remedy]];
    else if (run.reason) entries = [["Reason", run.reason]];
  } catch (e) {
    if (String(e.message).includes("403") || String(e.message).includes("DMS.00403")) {
      entries = [["Reason", "Shown to operators and admins only."]];
    }
  }
  if (!entries) { box.hidden = true; return; }
  facts($("detail-why-facts"), entries);
  box.hidden = false;
}

async function refreshDetail(focus) {
  const id = state.detail;
  if (!id) return;
  try {
    const [show, progress] = await Promise.all([api("GET", `${base()}/tasks/${id}`), api("GET", `${base()}/tasks/${id}/progress`)]);
    if (state.detail !== id) return;
    const t = show.tasks[0];
    $("detail-title").textContent = `${t.name}`;
    facts($("detail-facts"), [["ID", t.id], ["Status", badge(t.status)], ["Started by", t.user_name], ["Created", when(t.created_at)], ["Updated", when(t.updated_at)]]);
    await showWhy(id, t.status);
    if (state.detail !== id) return;
    let params = {};
    try { params = JSON.parse(t.params || "{}"); } catch { params = { params: t.params }; }
    const entries = Object.entries(params).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]);
    facts($("detail-params"), entries.length ? entries : [["", "none"]]);
    const pct = Number(progress.progress_percentage) || 0;
    $("detail-fill").style.width = `${pct}%`;
    $("detail-bar").setAttribute("aria-valuenow", String(pct));
    $("detail-pct").textContent = `${pct}%` + (progress.remain_time ? `, about ${progress.remain_time} s left` : "");
    $("detail-steps").replaceChildren(...(progress.step_list || []).map((s) =>
      el("li", { "data-step": s.name }, `${s.name} `, badge(s.statue),
        el("span", { class: "when" }, [s.start_time ? `started ${when(s.start_time)}` : "", s.end_time ? `ended ${when(s.end_time)}` : ""].filter(Boolean).join(", ")))));
    if (focus) $("detail").focus();
    if (!TERMINAL.includes(t.status)) {
      // Live: events say when a step changes; the timer only moves the remaining time on.
      state.detailTimer = setTimeout(() => refreshDetail(false), state.live ? 5000 : 1000);
    } else if (focus === false) {
      announce(`Task ${t.name} ${t.status}.`);
      loadTasks().catch(fail);
    }
  } catch (e) {
    fail(e);
  }
}

// ---------- scheduled tasks ----------

async function loadScheduled() {
  const body = await api("GET", `${base()}/scheduled-tasks`, { start: state.schedStart, limit: SCHED_PAGE });
  const total = Number(body.job_count) || 0;
  if (!body.jobs.length && state.schedStart > 1 && total > 0) {
    // The page emptied under us (deleted elsewhere): show the last one that has tasks.
    state.schedStart = Math.max(1, Math.floor((total - 1) / SCHED_PAGE) * SCHED_PAGE + 1);
    return loadScheduled();
  }
  if (state.canChange === null) {
    const some = await api("GET", `${base()}/tasks`, { start: 1, limit: 1 });
    if (some.tasks.length) await learnRole(some.tasks[0].id);
  }
  fail(null);
  const rows = body.jobs.map((t) =>
    el("tr", { "data-task": t.id },
      el("td", { "data-label": "Task" }, t.name, el("span", { class: "id" }, t.id)),
      el("td", { "data-label": "Status" }, badge(t.status)),
      el("td", { "data-label": "Runs at", title: t.schedule_at, class: "runs-at" }, whenCell(t.schedule_at)),
      el("td", { "data-label": "Started by" }, t.user_name),
      el("td", { class: "actions" },
        changes() && t.status === "CREATED" ? el("button", { type: "button", class: "secondary small", onclick: () => reschedule(t), "aria-label": `Reschedule ${t.name} ${t.id}` }, "Reschedule") : null,
        changes() && t.status === "CREATED" ? el("button", { type: "button", class: "secondary small", onclick: () => cancelScheduled(t), "aria-label": `Cancel task ${t.name} ${t.id}` }, "Cancel task") : null,
        changes() && TERMINAL.includes(t.status) ? el("button", { type: "button", class: "secondary small", onclick: () => deleteScheduled(t), "aria-label": `Delete ${t.name} ${t.id}` }, "Delete") : null)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "No scheduled tasks.")));
  $("scheduled").replaceChildren(...rows);
  const first = body.jobs.length ? state.schedStart : 0;
  const last = state.schedStart - 1 + body.jobs.length;
  $("sched-count").textContent = `${first}–${last} of ${total} scheduled tasks`;
  $("sched-prev").disabled = state.schedStart <= 1;
  $("sched-next").disabled = last >= total;
}

function reschedule(t) {
  const d = $("reschedule");
  const input = $("execute-at");
  input.value = localInput(new Date(t.schedule_at));
  input.min = localInput(new Date());
  $("reschedule-title").textContent = `Reschedule ${t.name}`;
  $("reschedule-back").onclick = () => d.close();
  input.onkeydown = (e) => { if (e.key === "Enter") { e.preventDefault(); $("reschedule-save").click(); } };
  $("reschedule-save").onclick = async () => {
    const at = new Date(input.value);
    if (!input.value || isNaN(at)) { input.reportValidity(); return; }
    d.close();
    try {
      await api("PUT", `${base()}/scheduled-tasks/${t.id}`, { execute_at: dmsTime(at) });
      announce(`Task ${t.id} now runs at ${when(at)}.`);
      await loadScheduled();
    } catch (e) { fail(e); }
  };
  d.showModal();
  input.focus();
}

async function cancelScheduled(t) {
  if (!(await confirmDialog(`Cancel the scheduled task ${t.name} (${t.id})? It will not run.`, "Cancel task"))) return;
  try {
    await api("PUT", `${base()}/scheduled-tasks/${t.id}`, { status: "CANCELLED" });
    announce(`Task ${t.id} cancelled.`);
    await loadScheduled();
  } catch (e) { fail(e); }
}

async function deleteScheduled(t) {
  if (!(await confirmDialog(`Delete the ${t.status} scheduled task ${t.name} (${t.id})?`, "Delete"))) return;
  try {
    await api("DELETE", `${base()}/scheduled-tasks/${t.id}`);
    announce(`Scheduled task ${t.id} deleted.`);
    await loadScheduled();
  } catch (e) { fail(e); }
}

// ---------- test control ----------

/** The server marks its page when it runs with `--test-control` (src/http/console.rs): the page
 * learns it without a request. */
const testControlOn = () => document.querySelector('meta[name="kt-test-control"]') !== null;
const controlBase = () => `/v2/${state.auth.project}/test-control`;

/** Shows the panel to an admin. The rules are admin-only, like every control route, and no
 * answer tells a key's role beforehand: the page asks for them once, and any refusal (an
 * operator's or a readonly key's 403) only leaves the panel hidden. A key already known to be
 * readonly is not asked. Read with `fetch` itself, not `api()`, so that an operator's 403 here
 * does not mark the key read-only for the task lists. */
async function probeControl() {
  $("control").hidden = true;
  if (!testControlOn() || !state.auth || state.canChange === false) return;
  const { url, headers } = await authorized("GET", `${controlBase()}/faults`);
  let body;
  try {
    const res = await fetch(url, { headers, credentials: "omit", cache: "no-store" });
    if (!res.ok) return;
    body = await res.json();
  } catch {
    return;
  }
  $("control").hidden = false;
  showFaults(body);
  await Promise.all([loadClock(), loadSnapshots()]).catch(fail);
}

/** A control action went through: its answer, and the last refusal is cleared. */
function said(msg) {
  fail(null);
  announce(msg);
}

/** What a rule matches, as `field=value` pairs. */
function ruleMatches(r) {
  const parts = ["operation", "project_id", "instance_id", "task_name", "step"].filter((k) => typeof r[k] === "string").map((k) => `${k}=${r[k]}`);
  return parts.length ? parts.join(", ") : "anything";
}

/** What a rule does, in words. */
function ruleEffect(r) {
  if (r.fail_step) return `fail the step: ${r.fail_step.reason}`;
  if (r.error) return `answer ${r.error.status_code} ${r.error.error_code || ""}`.trim() + (r.latency_ms ? ` after ${r.latency_ms} ms` : "");
  if (r.latency_ms !== undefined) return `delay the answer ${r.latency_ms} ms`;
  if (r.step_duration_ms !== undefined) return `the step takes ${r.step_duration_ms} ms`;
  if (r.step_duration_factor !== undefined) return `the step takes ×${r.step_duration_factor}`;
  return "";
}

function showFaults(body) {
  const rules = body && Array.isArray(body.rules) ? body.rules : [];
  const rows = rules.map((r) =>
    el("tr", { "data-rule": String(r.id) },
      el("td", { "data-label": "Rule" }, `#${r.id}`),
      el("td", { "data-label": "Matches" }, ruleMatches(r)),
      el("td", { "data-label": "Effect" }, ruleEffect(r)),
      el("td", { "data-label": "Times" }, r.times === null || r.times === undefined ? "every time" : String(r.times)),
      el("td", { "data-label": "Fired", class: "fired" }, String(r.fired)),
      el("td", { "data-label": "Matched" }, String(r.matched)),
      el("td", { "data-label": "State" }, r.retired ? "retired" : "live")));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "No fault rules.")));
  $("faults").replaceChildren(...rows);
  $("faults-clear").disabled = !rules.length;
}

async function loadFaults() {
  showFaults(await api("GET", `${controlBase()}/faults`));
}

function showClock(c) {
  facts($("clock-facts"), [
    ["Now", when(c.now)],
    ["Ahead of the wall clock", `${Math.round(Number(c.offset_ms) / 1000)} s`],
    ["Frozen", c.frozen ? "yes" : "no"],
  ]);
  $("clock-freeze").disabled = !!c.frozen;
  $("clock-resume").disabled = !c.frozen;
}

async function loadClock() {
  showClock(await api("GET", `${controlBase()}/clock`));
}

async function moveClock(body, what) {
  try {
    showClock(await api("POST", `${controlBase()}/clock`, undefined, body));
    said(what);
    reload();
  } catch (e) { fail(e); }
}

async function loadSnapshots() {
  const body = await api("GET", `${controlBase()}/snapshots`);
  const list = Array.isArray(body.snapshots) ? body.snapshots : [];
  const items = list.map((s) =>
    el("li", { "data-snapshot": s.name },
      el("span", { class: "snapshot-name" }, s.name),
      el("span", { class: "muted" }, ` ${when(s.created_at)}, ${Math.ceil(Number(s.size_bytes) / 1024)} KiB `),
      el("button", { type: "button", class: "secondary small", onclick: () => restoreSnapshot(s.name), "aria-label": `Restore snapshot ${s.name}` }, "Restore"),
      el("button", { type: "button", class: "secondary small", onclick: () => deleteSnapshot(s.name), "aria-label": `Delete snapshot ${s.name}` }, "Delete")));
  if (!items.length) items.push(el("li", { class: "muted" }, "No snapshots."));
  $("snapshots").replaceChildren(...items);
}

/** The rule the form describes: only the fields filled in; the server checks the rest. */
function ruleFromForm() {
  const rule = {};
  for (const [id, key] of [["fault-operation", "operation"], ["fault-task", "task_name"], ["fault-step", "step"]]) {
    const v = $(id).value.trim();
    if (v) rule[key] = v;
  }
  const num = (id) => ($(id).value.trim() === "" ? undefined : Number($(id).value));
  const effect = $("fault-effect").value;
  if (effect === "fail") rule.fail_step = { reason: $("fault-reason").value.trim() };
  if (effect === "delay") rule.latency_ms = num("fault-latency");
  if (effect === "error") {
    rule.error = { status_code: num("fault-status") };
    const code = $("fault-code").value.trim();
    if (code) rule.error.error_code = code;
  }
  const times = num("fault-times");
  if (times !== undefined) rule.times = times;
  return rule;
}

function showEffectFields() {
  const effect = $("fault-effect").value;
  for (const name of ["fail", "delay", "error"]) {
    for (const e of document.querySelectorAll(`.effect-${name}`)) e.hidden = name !== effect;
  }
}

async function addRule(e) {
  e.preventDefault();
  try {
    await api("PATCH", `${controlBase()}/faults`, undefined, { rules: [ruleFromForm()] });
    said("Fault rule added.");
    await loadFaults();
  } catch (err) { fail(err); }
}

async function clearRules() {
  if (!(await confirmDialog("Remove every fault rule (their fire counts go with them)?", "Remove all rules"))) return;
  try {
    await api("DELETE", `${controlBase()}/faults`);
    said("Every fault rule removed.");
    await loadFaults();
  } catch (e) { fail(e); }
}

async function resetServer() {
  const sure = await confirmDialog("Reset the server? Every instance, task, executor run, cluster binding, retention policy, added kernel build, the audit and every fault rule are deleted, for every project. Access keys, snapshots and the clock stay. This cannot be undone.", "Reset");
  if (!sure) return;
  try {
    await api("POST", `${controlBase()}/reset`, undefined, {});
    said("The server was reset.");
    await afterStateChange();
  } catch (e) { fail(e); }
}

/** After a reset or a restore the instances are others: the list is read again. */
async function afterStateChange() {
  closeDetail();
  const body = await api("GET", `/v2/${state.auth.project}/instances`);
  state.instances = body.instances || [];
  if (listInstances()) {
    pickInstance();
  } else {
    state.instance = null;
    unfollow();
    $("instance-status").textContent = "";
    $("tasks").replaceChildren(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "No tasks in this range.")));
    $("count").textContent = "0–0 of 0 tasks";
    $("scheduled").replaceChildren(el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "No scheduled tasks.")));
  }
  await Promise.all([loadFaults(), loadClock(), loadSnapshots()]);
}

async function saveSnapshot() {
  const name = $("snapshot-name").value.trim();
  try {
    await api("POST", `${controlBase()}/snapshots`, undefined, { name });
    said(`Snapshot ${name} saved.`);
    $("snapshot-name").value = "";
    await loadSnapshots();
  } catch (e) { fail(e); }
}

async function restoreSnapshot(name) {
  if (!(await confirmDialog(`Restore snapshot ${name}? The instances, tasks, executor runs and retention policies now on the server are replaced by the snapshot's.`, "Restore"))) return;
  try {
    await api("POST", `${controlBase()}/snapshots/${encodeURIComponent(name)}/restore`, undefined, {});
    said(`Snapshot ${name} restored.`);
    await afterStateChange();
  } catch (e) { fail(e); }
}

async function deleteSnapshot(name) {
  if (!(await confirmDialog(`Delete snapshot ${name}?`, "Delete"))) return;
  try {
    await api("DELETE", `${controlBase()}/snapshots/${encodeURIComponent(name)}`);
    said(`Snapshot ${name} deleted.`);
    await loadSnapshots();
  } catch (e) { fail(e); }
}

function refreshControl() {
  Promise.all([loadFaults(), loadClock(), loadSnapshots()]).then(() => fail(null), fail);
}

// ---------- wiring ----------

function autoRefresh() {
  clearInterval(state.timer);
  if ($("auto").checked) state.timer = setInterval(() => { if (!document.hidden && !document.querySelector("dialog[open]")) reload(); }, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const r of document.querySelectorAll("input[name=method]")) r.addEventListener("change", showMethod);
  for (const z of document.querySelectorAll(".zone")) z.textContent = zoneLabel();
  loadHints();
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    fail(null);
    const project = $("project").value.trim().toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(project)) { fail(new Error("The project ID is 32 hexadecimal characters.")); $("project").focus(); return; }
    const auth = method() === "aksk"
      ? { project, method: "aksk", ak: $("ak").value.trim(), sk: $("sk").value }
      : { project, method: "token", token: $("token").value.trim() };
    if (auth.method === "aksk" ? !auth.ak || !auth.sk : !auth.token) { fail(new Error("Fill in the credentials.")); return; }
    try {
      await signIn(auth);
      $("sk").value = "";
      $("token").value = "";
    } catch (err) {
      state.auth = null;
      fail(err);
    }
  });
  $("signout").addEventListener("click", signOut);
  $("instance").addEventListener("change", pickInstance);
  $("tab-bg").addEventListener("click", () => selectTab("bg"));
  $("tab-sched").addEventListener("click", () => selectTab("sched"));
  for (const id of ["tab-bg", "tab-sched"]) {
    $(id).addEventListener("keydown", (e) => {
      if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
      const next = id === "tab-bg" ? "tab-sched" : "tab-bg";
      selectTab(next === "tab-bg" ? "bg" : "sched");
      $(next).focus();
    });
  }
  $("range").addEventListener("change", () => {
    const custom = $("range").value === "custom";
    for (const c of document.querySelectorAll(".filters .custom")) c.hidden = !custom;
    if (custom && !$("from").value) $("from").value = localInput(new Date(Date.now() - RANGES.day));
    state.start = 1;
    reload();
  });
  for (const id of ["from", "to", "limit"]) $(id).addEventListener("change", () => { state.start = 1; reload(); });
  // The view (page size, time range) survives a reload of the tab, like the session.
  const VIEW = ["range", "from", "to", "limit"];
  for (const id of VIEW) $(id).addEventListener("change", () => sessionStorage.setItem(STORE + "-view", JSON.stringify(Object.fromEntries(VIEW.map((v) => [v, $(v).value])))));
  try {
    const view = JSON.parse(sessionStorage.getItem(STORE + "-view") || "{}");
    for (const id of VIEW) if (typeof view[id] === "string") $(id).value = view[id];
    for (const c of document.querySelectorAll(".filters .custom")) c.hidden = $("range").value !== "custom";
  } catch { sessionStorage.removeItem(STORE + "-view"); }
  $("refresh").addEventListener("click", reload);
  $("sched-refresh").addEventListener("click", reload);
  $("auto").addEventListener("change", autoRefresh);
  $("prev").addEventListener("click", () => { state.start = Math.max(1, state.start - Number($("limit").value)); reload(); });
  $("next").addEventListener("click", () => { state.start += Number($("limit").value); reload(); });
  $("detail-close").addEventListener("click", closeDetail);
  $("sched-prev").addEventListener("click", () => { state.schedStart = Math.max(1, state.schedStart - SCHED_PAGE); reload(); });
  $("sched-next").addEventListener("click", () => { state.schedStart += SCHED_PAGE; reload(); });
  $("test-server").hidden = !testControlOn();
  $("fault-form").addEventListener("submit", addRule);
  $("fault-effect").addEventListener("change", showEffectFields);
  $("faults-clear").addEventListener("click", clearRules);
  $("control-refresh").addEventListener("click", refreshControl);
  $("clock-advance").addEventListener("click", () => {
    const by = $("clock-by").value.trim();
    moveClock({ action: "advance", by }, `The clock moved ${by} ahead.`);
  });
  $("clock-freeze").addEventListener("click", () => moveClock({ action: "freeze" }, "The clock is frozen."));
  $("clock-resume").addEventListener("click", () => moveClock({ action: "resume" }, "The clock runs again."));
  $("snapshot-save").addEventListener("click", saveSnapshot);
  $("control-reset").addEventListener("click", resetServer);
  autoRefresh();
  const saved = sessionStorage.getItem(STORE);
  if (saved) {
    try { signIn(JSON.parse(saved)).catch((e) => { sessionStorage.removeItem(STORE); state.auth = null; fail(e); }); } catch { sessionStorage.removeItem(STORE); }
  }
});
