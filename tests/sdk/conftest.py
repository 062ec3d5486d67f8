"""Starts the real kafka-tasks binary for the SDK tests, each module on its own database."""

import json
import os
import subprocess
import tempfile
import threading

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkkafka.v2 import KafkaClient

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

    def credential(self, user, role="admin", project=PROJECT):
        """An access key made with `kafka-tasks credentials create`."""
        out = subprocess.run(
            [BINARY, "credentials", "create", "--project-id", project, "--user-name", user, "--role", role,
             "--database", self.db, "--master-key-file", self.key_file],
            check=True, capture_output=True, text=True,
        )
        return json.loads(out.stdout)

    def client(self, cred, algorithm=None):
        cfg = HttpConfig.get_default_config()
        cfg.ignore_ssl_verification = True
        cfg.timeout = (5, 20)
        if algorithm is not None:
            cfg.signing_algorithm = algorithm
        ak, sk, project = cred["access_key"], cred["secret_key"], cred["project_id"]
        return (KafkaClient.new_builder().with_http_config(cfg)
                .with_credentials(BasicCredentials(ak, sk, project))
                .with_endpoints([self.url]).build())

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def server():
    s = Server("--time-scale", "0")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client(server.credential("sdk-admin"))
