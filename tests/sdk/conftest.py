"""Starts the real kafka-tasks binary for the SDK tests, each module on its own database
(see kt_server.py)."""

import pytest
from sdk_server import SdkServer


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fidelity: calls of issue 9 that the server gains with the `fidelity` branch "
        "(deselect with -m 'not fidelity')")


@pytest.fixture(scope="module")
def server():
    s = SdkServer("--time-scale", "0")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client(server.credential("sdk-admin"))
