"""The server of the SDK tests, with the official Python SDK's client pointed at it (a module of
its own, so that test modules import it by a name no other suite's conftest shares)."""

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkkafka.v2 import KafkaClient
from kt_server import Server


class SdkServer(Server):
    def client(self, cred, algorithm=None, retry_times=0):
        """The official Python SDK, pointed at this server, signing with `cred` (and retrying a
        429 `retry_times` times, as the SDK's HttpConfig does)."""
        cfg = HttpConfig.get_default_config()
        cfg.ignore_ssl_verification = True
        cfg.timeout = (5, 20)
        cfg.retry_times = retry_times
        if algorithm is not None:
            cfg.signing_algorithm = algorithm
        ak, sk, project = cred["access_key"], cred["secret_key"], cred["project_id"]
        return (KafkaClient.new_builder().with_http_config(cfg)
                .with_credentials(BasicCredentials(ak, sk, project))
                .with_endpoints([self.url]).build())
