"""Starts the real kafka-tasks binary for the SDK tests, each module on its own database
(see kt_server.py).

Signing modes: the tests marked `every_signing_mode` run once per mode the Python SDK offers; the
rest run in the default mode (SDK-HMAC-SHA256) only. The server checks every request's signature
in one place, whatever the operation, so what a mode must prove is each shape of request a client
signs (a query string, a JSON body on POST and PUT, a DELETE), and the marked tests send all of
them; running every other operation again per mode would only repeat the same check."""

import pytest
from sdk_server import SIGNING_MODES, SdkServer

DEFAULT_MODE = "hmac-sha256"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "every_signing_mode: run this test once per signing mode of the SDK (the rest use the default)"
    )


def pytest_generate_tests(metafunc):
    if "server" in metafunc.fixturenames:
        every = metafunc.definition.get_closest_marker("every_signing_mode") is not None
        modes = list(SIGNING_MODES) if every else [DEFAULT_MODE]
        metafunc.parametrize("server", modes, indirect=True, scope="module")


@pytest.fixture(scope="module")
def server(request):
    """A server on a fresh database per signing mode, each module on a state of its own; its
    clients (through `client`) sign in that mode."""
    s = SdkServer("--time-scale", "0")
    s.signing = request.param
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client(server.credential("sdk-admin"), SIGNING_MODES[server.signing])
