"""The console in a real browser: headless Chromium (Debian's `chromium`, never downloaded) driven
by Playwright, against the built binary. Signs in with AK/SK (signed by the page with WebCrypto),
sees an instance's tasks, follows a running task's steps live, deletes a finished task, reschedules
and cancels a scheduled task; also signs in with a token and lays out on a phone.

Screenshots land in tests/console/artifacts/ (gitignored); KAFKA_TASKS_CONSOLE_PNG names a file to
copy the desktop screenshot to (README's docs/console.png)."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from playwright.sync_api import expect, sync_playwright

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "sdk"))
from kt_server import BINARY, PROJECT, Server  # noqa: E402

ARTIFACTS = os.path.join(HERE, "artifacts")
CHROMIUM = os.environ.get("KAFKA_TASKS_CHROMIUM", "/usr/bin/chromium")
# Steps last 5 % of their realistic time: a resize then runs for about 10 s, long enough to watch.
TIME_SCALE = "0.05"
TIMEOUT_MS = 30_000


class ConsoleServer(Server):
    def cli(self, *args):
        """`kafka-tasks …` as a client of this server with the admin key, JSON out."""
        env = dict(os.environ, KAFKA_TASKS_ENDPOINT=self.url, HUAWEICLOUD_SDK_PROJECT_ID=PROJECT,
                   HUAWEICLOUD_SDK_AK=self.admin["access_key"], HUAWEICLOUD_SDK_SK=self.admin["secret_key"])
        out = subprocess.run([BINARY, *args, "-o", "json"], env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout) if out.stdout.strip().startswith(("{", "[")) else out.stdout

    def token(self):
        out = subprocess.run([BINARY, "token", "create", "--access-key", self.admin["access_key"],
                              "--database", self.db, "--master-key-file", self.key_file],
                             check=True, capture_output=True, text=True)
        text = out.stdout.strip()
        return json.loads(text).get("token") if text.startswith("{") else text.split()[-1]


@pytest.fixture(scope="module")
def server():
    s = ConsoleServer("--time-scale", TIME_SCALE)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def watch(page, secret):
    """Fails the test on any CSP violation or script error, and on any request that carries the
    secret key."""
    problems = []
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
            and problems.append(m.text))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} from {r.url}"))
    page.on("pageerror", lambda e: problems.append(str(e)))

    def check(req):
        seen = req.url + json.dumps(req.headers) + (req.post_data or "")
        if secret and secret in seen:
            problems.append(f"the secret key was sent to {req.url}")
    page.on("request", check)
    return problems


def sign_in_with_keys(page, server):
    page.goto(server.url + "/console")
    page.get_by_label("Project ID").fill(PROJECT)
    page.get_by_label("Access key (AK/SK)").check()
    page.get_by_label("Access key ID (AK)").fill(server.admin["access_key"])
    page.get_by_label("Secret access key (SK)").fill(server.admin["secret_key"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Instance", exact=True)).to_be_visible()


def row(page, text):
    return page.locator("#tasks tr", has_text=text)


def test_a_person_manages_tasks_with_access_keys(server, browser):
    inst = server.cli("instances", "create", "--name", "orders", "--wait")["instance_id"]
    server.cli("configs", "set", "-i", inst, "log.retention.hours=24", "--wait")
    server.add_kernel("2.7", "2.7.2.1")
    scheduled = server.cli("upgrade", "-i", inst, "--at", "+1d")["schedule_id"]

    # Paris, so that the page's local times and the API's UTC differ.
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id="Europe/Paris", locale="en-GB")
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, server.admin["secret_key"])
    sign_in_with_keys(page, server)

    # The instance's tasks, newest first, with the total from task_count.
    expect(page.get_by_label("Instance", exact=True)).to_contain_text("orders")
    expect(page.locator("#count")).to_have_text("1–2 of 2 tasks")
    # Started now, so that it surely still runs when the page looks at it.
    running = server.cli("resize", "-i", inst, "--storage", "600")["job_id"]
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#count")).to_have_text("1–3 of 3 tasks")
    expect(page.locator("#instance-status")).to_contain_text("EXTENDING")
    expect(row(page, "createInstance").locator(".badge")).to_have_text("SUCCESS")
    # One date format whatever the locale, with its zone (December: Paris is UTC+01:00).
    expect(row(page, "createInstance").locator("td[data-label=Created]")).to_contain_text(
        re.compile(r"^20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC[+-]\d\d:\d\d"))
    assert page.evaluate("when('2026-12-05T13:47:24.000Z')") == "2026-12-05 14:47:24 UTC+01:00"
    assert page.evaluate("when('2026-07-05T13:47:24.000Z')") == "2026-07-05 15:47:24 UTC+02:00"
    expect(row(page, running).locator(".badge")).to_have_text("EXECUTING")
    expect(row(page, running).get_by_role("button", name="Delete")).to_have_count(0)
    # A running task shows how far it is, a finished one when it ended (and a running one not).
    expect(row(page, running).locator("td[data-label=Progress]")).to_contain_text(re.compile(r"^\d{1,3}%$"))
    expect(row(page, running).get_by_role("progressbar")).to_have_attribute("aria-valuenow", re.compile(r"^\d{1,3}$"))
    expect(row(page, running).locator("td[data-label=Ended]")).to_have_text("")
    done = [t for t in server.cli("tasks", "list", "-i", inst)["tasks"] if t["name"] == "createInstance"][0]
    expect(row(page, "createInstance").locator("td[data-label=Ended]")).to_have_text(
        page.evaluate("(iso) => when(iso)", done["updated_at"]))
    expect(row(page, "createInstance").locator("td[data-label=Progress]")).to_have_text("")
    # Each cell sits under its own heading.
    headings = page.locator("#panel-bg thead th").all_inner_texts()
    labels = row(page, running).locator("td").evaluate_all("tds => tds.map(td => td.dataset.label || '')")
    assert [h for h in headings if h.strip() and h != "Actions"] == [x for x in labels if x], (headings, labels)

    # A running task's steps, live.
    row(page, running).get_by_role("button", name="Details").click()
    steps = page.locator("#detail-steps li")
    expect(steps).to_have_count(3)
    expect(page.locator("#detail-steps")).to_contain_text("pre_check")
    expect(page.locator("#detail-steps .badge", has_text="IN_PROGRESS")).to_have_count(1)
    expect(page.locator("#detail-params")).to_contain_text("new_storage_space")
    page.screenshot(path=os.path.join(ARTIFACTS, "running-task.png"))
    if os.environ.get("KAFKA_TASKS_CONSOLE_PNG"):
        shutil.copy(os.path.join(ARTIFACTS, "running-task.png"), os.environ["KAFKA_TASKS_CONSOLE_PNG"])
    expect(page.locator("#detail-facts .badge")).to_have_text("SUCCESS", timeout=60_000)
    expect(page.locator("#detail-steps .badge", has_text="COMPLETED")).to_have_count(3)
    expect(page.locator("#detail-pct")).to_have_text("100%")
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#instance-status")).to_contain_text("RUNNING")
    expect(row(page, running).locator("td[data-label=Ended]")).to_contain_text(re.compile(r"^20\d\d-"))

    # A finished task is deleted after a confirmation, and is gone.
    victim = row(page, "kafkaConfigModify")
    victim.get_by_role("button", name="Delete").click()
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm").get_by_role("button", name="Keep it")).to_be_focused()
    page.keyboard.press("Escape")  # the safe answer is the default
    expect(page.locator("#confirm")).to_be_hidden()
    expect(row(page, "kafkaConfigModify")).to_have_count(1)
    victim.get_by_role("button", name="Delete").click()
    page.locator("#confirm").get_by_role("button", name="Delete").click()
    expect(row(page, "kafkaConfigModify")).to_have_count(0)
    expect(page.locator("#count")).to_have_text("1–2 of 2 tasks")
    expect(page.locator("#announce")).to_contain_text("deleted")
    listed = server.cli("tasks", "list", "-i", inst)
    assert "kafkaConfigModify" not in [t["name"] for t in listed["tasks"]]
    page.screenshot(path=os.path.join(ARTIFACTS, "after-delete.png"))

    # The time range: nothing was created in a custom window a year ago.
    page.get_by_label("Created").select_option("custom")
    page.get_by_label(re.compile(r"^From \(Europe/Paris, UTC\+0[12]:00\)")).fill("2025-01-01T00:00:00")
    page.get_by_label(re.compile(r"^To \(Europe/Paris, UTC\+0[12]:00\)")).fill("2025-01-02T00:00:00")
    expect(page.locator("#count")).to_have_text("0–0 of 0 tasks")
    page.get_by_label("Created").select_option("hour")
    expect(page.locator("#count")).to_have_text("1–2 of 2 tasks")

    # Scheduled tasks: reschedule with the date-time picker (Paris time), then cancel.
    page.get_by_role("tab", name="Scheduled Tasks").click()
    sched = page.locator("#scheduled tr", has_text=scheduled)
    expect(sched.locator(".badge")).to_have_text("CREATED")
    sched.get_by_role("button", name="Reschedule").click()
    page.get_by_label(re.compile(r"^Run at \(Europe/Paris, UTC\+0[12]:00\)")).fill("2030-02-03T05:06:07")
    page.get_by_label(re.compile(r"^Run at \(Europe/Paris, UTC\+0[12]:00\)")).press("Enter")
    expect(page.locator("#announce")).to_contain_text("now runs at 2030-02-03 05:06:07 UTC+01:00")
    jobs = server.cli("scheduled", "list", "-i", inst)["jobs"]
    assert [j["schedule_at"] for j in jobs if j["id"] == scheduled] == ["2030-02-03T04:06:07.000Z"]
    expect(sched.locator(".runs-at")).to_have_text("2030-02-03 05:06:07 UTC+01:00")
    page.screenshot(path=os.path.join(ARTIFACTS, "scheduled.png"))

    sched.get_by_role("button", name="Cancel task").click()
    page.locator("#confirm").get_by_role("button", name="Cancel task").click()
    expect(sched.locator(".badge")).to_have_text("CANCELLED")
    jobs = server.cli("scheduled", "list", "-i", inst)["jobs"]
    assert [j["status"] for j in jobs if j["id"] == scheduled] == ["CANCELLED"]
    sched.get_by_role("button", name="Delete").click()
    page.locator("#confirm").get_by_role("button", name="Delete").click()
    expect(sched).to_have_count(0)
    page.screenshot(path=os.path.join(ARTIFACTS, "scheduled-after.png"))

    # Keyboard: the tabs move with the arrow keys.
    page.get_by_role("tab", name="Scheduled Tasks").focus()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("tab", name="Background Tasks")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tab", name="Background Tasks")).to_be_focused()

    # Tasks started elsewhere appear by themselves (auto-refresh), and the pages follow task_count.
    page.get_by_label("Per page").select_option("10")
    expect(page.locator("#count")).to_have_text("1–2 of 2 tasks")
    for hours in range(10, 19):
        server.cli("configs", "set", "-i", inst, f"log.retention.hours={hours}", "--wait")
    expect(page.locator("#count")).to_have_text("1–10 of 11 tasks", timeout=15_000)
    expect(page.get_by_role("button", name="Newer")).to_be_disabled()
    page.get_by_role("button", name="Older").click()
    expect(page.locator("#count")).to_have_text("11–11 of 11 tasks")
    expect(row(page, "createInstance")).to_have_count(1)
    expect(page.get_by_role("button", name="Older")).to_be_disabled()
    page.get_by_role("button", name="Newer").click()
    expect(page.locator("#count")).to_have_text("1–10 of 11 tasks")

    # A reload keeps the session (same tab); signing out forgets the key.
    page.reload()
    expect(page.locator("#count")).to_have_text("1–10 of 11 tasks")

    # The key lives in this tab's session storage only.
    assert page.evaluate("localStorage.length") == 0
    assert server.admin["secret_key"] in page.evaluate("JSON.stringify(sessionStorage)")
    assert problems == [], problems
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    ctx.close()


def test_a_wrong_secret_is_refused_and_nothing_is_shown(server, browser):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url + "/console")
    page.get_by_label("Project ID").fill(PROJECT)
    page.get_by_label("Access key ID (AK)").fill(server.admin["access_key"])
    page.get_by_label("Secret access key (SK)").fill("not-the-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("APIGW.0301")
    # Under it, what the CLI would say: the same hint table (crates/client/src/hints.rs), served.
    expect(page.locator("#error .error-hint")).to_have_text(re.compile(
        "^What to do: the server does not know the access key " + re.escape(server.admin["access_key"])
        + ", or the secret key is not its own"))
    page.screenshot(path=os.path.join(ARTIFACTS, "wrong-secret-hint.png"))
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    ctx.close()


def test_a_token_signs_in_too_and_the_page_fits_a_phone(server, browser):
    token = server.token()
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, None)
    page.goto(server.url + "/console")
    page.get_by_label("Project ID").fill(PROJECT)
    page.get_by_role("radio", name="Token").check()
    page.get_by_label(re.compile("^Token \\(sent as")).fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Instance", exact=True)).to_contain_text("orders")
    expect(page.locator("#tasks tr", has_text="createInstance")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling on a phone"
    page.screenshot(path=os.path.join(ARTIFACTS, "phone.png"), full_page=True)
    assert problems == [], problems
    ctx.close()


def test_the_page_signs_the_specs_test_vectors(server, browser):
    """The page's signer, run by Chromium's WebCrypto, against the vectors of the API contract §5.1."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(server.url + "/console")
    got = page.evaluate("""async () => [
      await signature("GET", "/path", [["limit", "1"]], {"x-sdk-date": "20060102T150405Z"}, "", "SecretKey"),
      await signature("GET", "/v2/0123456789abcdef0123456789abcdef/instances/11111111-2222-3333-4444-555555555555/tasks",
        [["start", "1"], ["limit", "10"], ["begin_time", "20240101000000"]],
        {"content-type": "application/json", "host": "dms.cn-north-4.myhuaweicloud.com",
         "user-agent": "huaweicloud-usdk-python/3.0", "x-project-id": "0123456789abcdef0123456789abcdef",
         "x-sdk-date": "20240102T030405Z"}, "", "SecretKey"),
      await signature("DELETE", "/v2/0123456789abcdef0123456789abcdef/instances/11111111-2222-3333-4444-555555555555/tasks/8abfa7b372160bfd0172165864064079",
        [], {"content-type": "application/json", "host": "dms.cn-north-4.myhuaweicloud.com", "x-sdk-date": "20240102T030405Z"}, "", "SecretKey"),
      await signature("PUT", "/v2/p/instances/i/scheduled-tasks/t", [["status", "CANCELLED"], ["execute_at", "20240101000000"]],
        {"host": "dms.cn-north-4.myhuaweicloud.com", "x-sdk-date": "20240102T030405Z"}, "", "SecretKey"),
      canonicalUri("/a b/%7Ex/"), canonicalQuery([["b", "x y*"], ["a", "2"], ["a", "1"]]),
    ]""")
    assert got == [
        "5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624",
        "aefcf3c1fa3a1913bd87d1d4a405f327b8f5c974077139cdec0c3a5f015d60e1",
        "aa4d89bb6d1fa61003ad3bab152289ea4ebc8489c6c535c3c031456524dfbe6d",
        "8022538db63375d0a467fe64f39e0b78f6fa011811cd54a4beaf3074dec78075",
        "/a%20b/~x/", "a=1&a=2&b=x%20y%2A",
    ]
    ctx.close()


def test_the_page_follows_the_event_stream_without_polling(server, browser):
    inst = server.cli("instances", "create", "--name", "live", "--wait")["instance_id"]
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, server.admin["secret_key"])
    sign_in_with_keys(page, server)
    page.get_by_label("Instance", exact=True).select_option(inst)
    expect(page.locator("#live")).to_have_text("Live")
    # No polling: only the stream can bring what follows onto the page.
    page.get_by_label("Auto-refresh (5 s)").uncheck()
    expect(page.locator("#count")).to_have_text("1–1 of 1 tasks")
    job = server.cli("autotopic", "-i", inst, "on")["job_id"]
    expect(row(page, job)).to_have_count(1, timeout=4_000)
    expect(page.locator("#count")).to_have_text("1–2 of 2 tasks")
    # The open task's detail moves with the stream too, to its end.
    row(page, job).get_by_role("button", name="Details").click()
    expect(page.locator("#detail-facts .badge")).to_have_text("SUCCESS", timeout=60_000)
    expect(row(page, job).locator(".badge")).to_have_text("SUCCESS", timeout=4_000)
    assert problems == [], problems
    ctx.close()


def test_a_failed_task_says_why_and_what_to_do(server, browser):
    inst = server.cli("instances", "create", "--name", "too-small-pool", "--wait")["instance_id"]
    # Beyond the server's storage pool (100 000 GB by default): fails at its disk_expansion step.
    job = server.cli("resize", "-i", inst, "--storage", "200000")["job_id"]
    env = dict(os.environ, KAFKA_TASKS_ENDPOINT=server.url, HUAWEICLOUD_SDK_PROJECT_ID=PROJECT,
               HUAWEICLOUD_SDK_AK=server.admin["access_key"], HUAWEICLOUD_SDK_SK=server.admin["secret_key"])
    waited = subprocess.run([BINARY, "tasks", "wait", "-i", inst, job], env=env, capture_output=True, text=True)
    assert waited.returncode == 3, waited

    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, server.admin["secret_key"])
    sign_in_with_keys(page, server)
    page.get_by_label("Instance", exact=True).select_option(inst)
    failed = row(page, job)
    expect(failed.locator(".badge")).to_have_text("FAILED")
    # The red badge is red: the colour a person reads, not only a word.
    # A retrying assertion: the list re-renders on its own refresh, and a badge read just as it is
    # replaced is a detached element whose computed colour is empty.
    expect(failed.locator(".badge")).to_have_css("color", "rgb(161, 40, 40)")
    failed.get_by_role("button", name="Details").click()
    why = page.locator("#detail-why")
    expect(why).to_be_visible()
    expect(why).to_contain_text("disk_expansion")
    expect(why).to_contain_text("not enough storage")
    expect(why).to_contain_text("200000 GB")
    expect(why).to_contain_text("What to do")
    page.screenshot(path=os.path.join(ARTIFACTS, "failed-task-why.png"))
    # A task that did not fail shows no such box.
    page.get_by_role("button", name="Close").click()
    row(page, "createInstance").get_by_role("button", name="Details").click()
    expect(page.locator("#detail-facts .badge")).to_have_text("SUCCESS")
    expect(why).to_be_hidden()
    assert problems == [], problems
    ctx.close()


def test_a_server_that_goes_away_is_said_so_and_the_page_comes_back_with_it(browser):
    s = ConsoleServer()
    try:
        s.cli("instances", "create", "--name", "flaky", "--wait")
        ctx = browser.new_context(viewport={"width": 1280, "height": 860})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        sign_in_with_keys(page, s)
        expect(row(page, "createInstance")).to_have_count(1)
        expect(page.locator("#announce")).to_contain_text("Signed in")
        expect(page.locator("#offline")).to_be_hidden()

        s.proc.kill()
        s.proc.wait()
        page.get_by_role("button", name="Refresh").click()
        expect(page.locator("#offline")).to_be_visible()
        expect(page.locator("#offline")).to_contain_text("unreachable")
        # Not the browser's bare words, and no stale "Signed in" above them.
        expect(page.locator("#error")).not_to_contain_text("Failed to fetch")
        expect(page.locator("#announce")).not_to_contain_text("Signed in")
        page.screenshot(path=os.path.join(ARTIFACTS, "server-unreachable.png"))

        # Back on the same address and database: the page notices by itself.
        s.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", s.addr, "--poll-ms", "20", "--database", s.db,
             "--master-key-file", s.key_file], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        expect(page.locator("#offline")).to_be_hidden(timeout=20_000)
        expect(page.locator("#announce")).to_contain_text("Connected again")
        expect(page.locator("#error")).to_be_empty()
        expect(row(page, "createInstance")).to_have_count(1)
        ctx.close()
    finally:
        s.stop()


def test_a_readonly_key_sees_no_buttons_that_change_anything(server, browser):
    inst = server.cli("instances", "create", "--name", "watched", "--wait")["instance_id"]
    server.cli("autotopic", "-i", inst, "on", "--wait")
    server.add_kernel("2.7", "2.7.2.2")
    scheduled = server.cli("upgrade", "-i", inst, "--at", "+1d")["schedule_id"]
    reader = server.credential("reader", role="readonly")
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, reader["secret_key"])
    page.goto(server.url + "/console")
    page.get_by_label("Project ID").fill(PROJECT)
    page.get_by_label("Access key ID (AK)").fill(reader["access_key"])
    page.get_by_label("Secret access key (SK)").fill(reader["secret_key"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Instance", exact=True).select_option(inst)
    expect(row(page, "createInstance").locator(".badge")).to_have_text("SUCCESS")
    expect(page.locator("#role")).to_have_text("read-only")
    # Finished tasks, yet nothing to delete; the details still open.
    expect(page.locator("#tasks").get_by_role("button", name="Delete")).to_have_count(0)
    expect(page.locator("#tasks").get_by_role("button", name="Details")).to_have_count(2)
    page.get_by_role("tab", name="Scheduled Tasks").click()
    sched = page.locator("#scheduled tr", has_text=scheduled)
    expect(sched.locator(".badge")).to_have_text("CREATED")
    expect(page.locator("#scheduled").get_by_role("button")).to_have_count(0)
    page.screenshot(path=os.path.join(ARTIFACTS, "readonly.png"))
    # The only refusal is the one the page learnt its role from.
    assert all(p.startswith("403 from ") and p.endswith("/run") for p in problems), problems
    assert len(problems) == 1, problems
    ctx.close()

    # The same instance with the admin key: the buttons are there.
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, server.admin["secret_key"])
    sign_in_with_keys(page, server)
    page.get_by_label("Instance", exact=True).select_option(inst)
    expect(page.locator("#tasks").get_by_role("button", name="Delete")).to_have_count(2)
    expect(page.locator("#role")).to_be_hidden()
    page.get_by_role("tab", name="Scheduled Tasks").click()
    expect(page.locator("#scheduled tr", has_text=scheduled).get_by_role("button", name="Cancel task")).to_have_count(1)
    assert problems == [], problems
    ctx.close()


def test_more_than_a_hundred_scheduled_tasks_are_paged(server, browser):
    inst = server.cli("instances", "create", "--name", "busy-calendar", "--wait")["instance_id"]
    server.add_kernel("2.7", "2.7.2.3")
    ids = {server.cli("upgrade", "-i", inst, "--at", f"+{d}d")["schedule_id"] for d in range(1, 103)}
    assert len(ids) == 102
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, server.admin["secret_key"])
    sign_in_with_keys(page, server)
    page.get_by_label("Instance", exact=True).select_option(inst)
    page.get_by_role("tab", name="Scheduled Tasks").click()
    expect(page.locator("#sched-count")).to_have_text("1–100 of 102 scheduled tasks")
    expect(page.locator("#scheduled tr")).to_have_count(100)
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()
    seen = set(page.locator("#scheduled tr").evaluate_all("rs => rs.map(r => r.dataset.task)"))
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#sched-count")).to_have_text("101–102 of 102 scheduled tasks")
    expect(page.locator("#scheduled tr")).to_have_count(2)
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    seen |= set(page.locator("#scheduled tr").evaluate_all("rs => rs.map(r => r.dataset.task)"))
    assert seen == ids, ids ^ seen
    page.screenshot(path=os.path.join(ARTIFACTS, "scheduled-page-2.png"))
    page.get_by_role("button", name="Previous page").click()
    expect(page.locator("#sched-count")).to_have_text("1–100 of 102 scheduled tasks")
    assert problems == [], problems
    ctx.close()


@pytest.fixture(scope="module")
def control_server():
    """A second server, with `--test-control`: the one whose page offers the test control panel."""
    s = ConsoleServer("--time-scale", TIME_SCALE, "--test-control")
    yield s
    s.stop()


def sign_in_as(page, server, cred):
    page.goto(server.url + "/console")
    page.get_by_label("Project ID").fill(PROJECT)
    page.get_by_label("Access key ID (AK)").fill(cred["access_key"])
    page.get_by_label("Secret access key (SK)").fill(cred["secret_key"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Instance", exact=True)).to_be_visible()


def test_an_admin_injects_a_fault_moves_the_clock_and_resets_from_the_panel(control_server, browser):
    srv = control_server
    inst = srv.cli("instances", "create", "--name", "chaos", "--wait")["instance_id"]

    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, srv.admin["secret_key"])
    sign_in_with_keys(page, srv)
    # Everyone is told it is a test server; the admin gets the panel.
    expect(page.locator("#test-server")).to_be_visible()
    panel = page.get_by_role("region", name="Test control")
    expect(panel).to_be_visible()
    expect(panel.locator("#faults")).to_contain_text("No fault rules.")

    # A fail rule, through the form (keyboard: the last field submits with Enter).
    reason = "broker 2 did not rejoin the ISR <b>"
    panel.get_by_label("Task name (step effects)").fill("restartInstance")
    panel.get_by_label("Step (step effects)").fill("health_check")
    panel.get_by_label("Effect", exact=True).select_option("fail")
    panel.get_by_label("Failure reason").fill(reason)
    panel.get_by_label("Times (empty: every time)").fill("1")
    panel.get_by_label("Times (empty: every time)").press("Enter")
    rule = panel.locator("#faults tr", has_text="restartInstance")
    expect(rule).to_have_count(1)
    expect(rule.locator("td[data-label=Effect]")).to_have_text(f"fail the step: {reason}")  # as text
    expect(rule.locator("td[data-label=Fired]")).to_have_text("0")
    listed = srv.cli("control", "faults", "list")["rules"]
    assert [(r["task_name"], r["step"], r["fail_step"]["reason"], r["times"], r["fired"]) for r in listed] == [
        ("restartInstance", "health_check", reason, 1, 0)], listed

    # The restart, from the CLI, fails with the injected reason.
    env = dict(os.environ, KAFKA_TASKS_ENDPOINT=srv.url, HUAWEICLOUD_SDK_PROJECT_ID=PROJECT,
               HUAWEICLOUD_SDK_AK=srv.admin["access_key"], HUAWEICLOUD_SDK_SK=srv.admin["secret_key"])
    waited = subprocess.run([BINARY, "restart", "-i", inst, "--wait"], env=env, capture_output=True, text=True)
    assert waited.returncode != 0, waited
    tasks = srv.cli("tasks", "list", "-i", inst)["tasks"]
    restart = [t for t in tasks if t["name"] == "restartInstance"]
    assert [t["status"] for t in restart] == ["FAILED"], tasks
    assert srv.cli("control", "faults", "list")["rules"][0]["fired"] == 1
    panel.get_by_role("button", name="Refresh test control").click()
    expect(rule.locator("td[data-label=Fired]")).to_have_text("1")
    expect(rule.locator("td[data-label=State]")).to_have_text("retired")
    page.get_by_role("button", name="Refresh", exact=True).click()
    failed = row(page, restart[0]["id"])
    expect(failed.locator(".badge")).to_have_text("FAILED")
    failed.get_by_role("button", name="Details").click()
    expect(page.locator("#detail-why")).to_contain_text(reason)
    page.get_by_role("button", name="Close").click()

    # The clock: two hours ahead, then frozen and running again.
    before = srv.cli("control", "clock", "show")["offset_ms"]
    panel.get_by_label("Advance by (90s, 15m, 2h, 1d)").fill("2h")
    panel.get_by_role("button", name="Advance").click()
    expect(page.locator("#announce")).to_contain_text("The clock moved 2h ahead.")
    assert srv.cli("control", "clock", "show")["offset_ms"] >= before + 2 * 3600 * 1000
    expect(panel.locator("#clock-facts")).to_contain_text(re.compile(r"Ahead of the wall clock\s*720\d s"))
    panel.get_by_role("button", name="Freeze").click()
    expect(panel.locator("#clock-facts")).to_contain_text(re.compile(r"Frozen\s*yes"))
    assert srv.cli("control", "clock", "show")["frozen"] is True
    panel.get_by_role("button", name="Resume").focus()
    page.keyboard.press("Enter")
    expect(panel.locator("#clock-facts")).to_contain_text(re.compile(r"Frozen\s*no"))
    assert srv.cli("control", "clock", "show")["frozen"] is False

    # A bad duration is the server's clear refusal, and moves nothing.
    at = srv.cli("control", "clock", "show")["offset_ms"]
    panel.get_by_label("Advance by (90s, 15m, 2h, 1d)").fill("soon")
    panel.get_by_role("button", name="Advance").click()
    expect(page.locator("#error")).to_contain_text("DMS.00400800")
    assert problems == ["400 from " + srv.url + f"/v2/{PROJECT}/test-control/clock"], problems
    problems.clear()
    assert srv.cli("control", "clock", "show")["offset_ms"] == at

    # Snapshots: saved, listed, deleted.
    panel.get_by_label("Snapshot name").fill("after-restart")
    panel.get_by_role("button", name="Save snapshot").click()
    expect(panel.locator("#snapshots li", has_text="after-restart")).to_have_count(1)
    expect(page.locator("#error")).to_have_text("")  # the refusal above is over
    assert [s["name"] for s in srv.cli("control", "snapshot", "list")["snapshots"]] == ["after-restart"]
    page.screenshot(path=os.path.join(ARTIFACTS, "test-control.png"), full_page=True)
    # On a phone the panel fits the width, as the rest of the page does.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    expect(panel.get_by_role("button", name="Add rule")).to_be_visible()
    page.screenshot(path=os.path.join(ARTIFACTS, "test-control-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    panel.get_by_role("button", name="Delete snapshot after-restart").click()
    page.locator("#confirm").get_by_role("button", name="Delete").click()
    expect(panel.locator("#snapshots")).to_contain_text("No snapshots.")
    assert srv.cli("control", "snapshot", "list")["snapshots"] == []

    # Reset: the confirmation names what goes; Escape keeps everything.
    panel.get_by_role("button", name="Reset the server…").click()
    expect(page.locator("#confirm-text")).to_contain_text("Every instance, task")
    expect(page.locator("#confirm-text")).to_contain_text("every fault rule")
    expect(page.locator("#confirm").get_by_role("button", name="Keep it")).to_be_focused()
    page.keyboard.press("Escape")
    assert [i["instance_id"] for i in srv.cli("instances", "list")["instances"]] == [inst]
    panel.get_by_role("button", name="Reset the server…").click()
    page.locator("#confirm").get_by_role("button", name="Reset").click()
    expect(page.locator("#announce")).to_have_text("The server was reset.")
    expect(page.locator("#count")).to_have_text("0–0 of 0 tasks")
    expect(page.locator("#tasks")).to_contain_text("No tasks")
    expect(panel.locator("#faults")).to_contain_text("No fault rules.")
    assert srv.cli("instances", "list")["instances"] == []
    assert srv.cli("control", "faults", "list")["rules"] == []
    assert problems == [], problems
    ctx.close()


def test_only_an_admin_of_a_test_control_server_sees_the_panel(control_server, server, browser):
    # A readonly key on the test control server: told it is a test server, offered no panel.
    reader = control_server.credential("panel-reader", role="readonly")
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, reader["secret_key"])
    with page.expect_response(lambda r: "/test-control/faults" in r.url) as probe:
        sign_in_as(page, control_server, reader)
    assert probe.value.status == 403
    expect(page.locator("#test-server")).to_be_visible()
    expect(page.locator("#announce")).to_contain_text("Signed in.")
    expect(page.locator("#control")).to_be_hidden()
    page.screenshot(path=os.path.join(ARTIFACTS, "test-control-readonly.png"))
    # The one refusal is the look at the rules that told the page this key is no admin.
    assert problems == [f"403 from {control_server.url}/v2/{PROJECT}/test-control/faults"], problems
    ctx.close()

    # An admin of a server without test control: no notice, no panel, and no request for one.
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = watch(page, server.admin["secret_key"])
    asked = []
    page.on("request", lambda r: "test-control" in r.url and asked.append(r.url))
    sign_in_with_keys(page, server)
    expect(page.locator("#announce")).to_contain_text("Signed in.")
    expect(page.locator("#test-server")).to_be_hidden()
    expect(page.locator("#control")).to_be_hidden()
    assert page.locator('meta[name="kt-test-control"]').count() == 0
    assert asked == [] and problems == [], (asked, problems)
    ctx.close()
