"""Starts the real kafka-tasks binary on a fresh SQLite database (shared by the Python SDK tests
and the Terraform request replay)."""

import json
import os
import subprocess
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("KAFKA_TASKS_BIN", os.path.join(ROOT, "target", "debug", "kafka-tasks"))
PROJECT = "0123456789abcdef0123456789abcdef"


class Server:
    def __init__(self, *flags):
        self.dir = tempfile.TemporaryDirectory()
        self.db = "sqlite:" + os.path.join(self.dir.name, "sdk.db")
        self.key_file = os.path.join(self.dir.name, "master.key")
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--poll-ms", "20",
             "--database", self.db, "--master-key-file", self.key_file, *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        found = threading.Event()
        self.addr = None

        def read():
            for line in self.proc.stderr:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("message") == "listening" and not found.is_set():
                    self.addr = rec["addr"]
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(20):
            self.stop()
            raise RuntimeError("kafka-tasks did not start")
        self.url = f"http://{self.addr}"
        # On an empty database `serve` makes an admin key and writes it beside the master key.
        with open(os.path.join(self.dir.name, "initial-credential.json"), encoding="utf-8") as f:
            self.admin = json.load(f)

    def credential(self, user, role="admin", project=PROJECT):
        """An access key made with `kafka-tasks credentials create`."""
        out = subprocess.run(
            [BINARY, "credentials", "create", "--project-id", project, "--user-name", user, "--role", role,
             "--database", self.db, "--master-key-file", self.key_file],
            check=True, capture_output=True, text=True,
        )
        return json.loads(out.stdout)

    def add_kernel(self, engine_version, build):
        """Adds a newer kernel build for an engine version, so that `latest_version` moves ahead of the
        instances: `kafka-tasks kernels add` on the server's database."""
        subprocess.run(
            [BINARY, "kernels", "add", "--engine-version", engine_version, "--build", build, "--database", self.db],
            check=True, capture_output=True, text=True,
        )

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()


class Control:
    """Test control of a server started with `serve --test-control`, through the CLI
    (`kafka-tasks control … --output json`), as the server's admin."""

    def __init__(self, endpoint, cred):
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "KAFKA_TASKS_ENDPOINT": endpoint,
            "HUAWEICLOUD_SDK_AK": cred["access_key"],
            "HUAWEICLOUD_SDK_SK": cred["secret_key"],
            "HUAWEICLOUD_SDK_PROJECT_ID": cred["project_id"],
        }

    def __call__(self, *args):
        out = subprocess.run([BINARY, "control", *args, "--output", "json"],
                             env=self.env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    def inject(self, **rule):
        """Adds one fault rule (the fields of docs/notes/control.md)."""
        return self("faults", "add", json.dumps(rule))
