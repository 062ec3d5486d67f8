"""The Terraform request replay: the real binary on a fresh database per module, and a client that
signs and sends requests as the provider's Go SDK does (golangsdk.py)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sdk"))

from kt_server import Server  # noqa: E402
from golangsdk import GoClient  # noqa: E402


@pytest.fixture(scope="module")
def server():
    s = Server("--time-scale", "0")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def go(server):
    """The provider's DMS client, with the first admin key of the project (AK/SK authentication)."""
    cred = server.admin
    return GoClient(server.url, cred["access_key"], cred["secret_key"], cred["project_id"])
