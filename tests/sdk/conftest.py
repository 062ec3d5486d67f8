"""Starts the real kafka-tasks binary for the SDK tests, each module on its own database
(see kt_server.py), once per signing mode the Python SDK offers."""

import pytest
from sdk_server import SIGNING_MODES, SdkServer


@pytest.fixture(scope="module", params=list(SIGNING_MODES))
def server(request):
    """A server on a fresh database per signing mode: every test of a module runs once per mode
    (through `client`), each on a state of its own."""
    s = SdkServer("--time-scale", "0")
    s.signing = request.param
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client(server.credential("sdk-admin"), SIGNING_MODES[server.signing])
