"""The server of the SDK tests, with the official Python SDK's client pointed at it (a module of
its own, so that test modules import it by a name no other suite's conftest shares)."""

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkcore.signer.algorithm import SigningAlgorithm
from huaweicloudsdkkafka.v2 import KafkaClient
from kt_server import Server

# Every signing mode the Python SDK offers: its four SigningAlgorithm values, and derived AK/SK
# (V11-HMAC-SHA256), which is a property of the credentials, not an algorithm.
SIGNING_MODES = {
    "hmac-sha256": SigningAlgorithm.HMAC_SHA256,
    "hmac-sm3": SigningAlgorithm.HMAC_SM3,
    "ecdsa-p256-sha256": SigningAlgorithm.ECDSA_P256_SHA256,
    "sm2-sm3": SigningAlgorithm.SM2_SM3,
    "v11-hmac-sha256": "v11",
}
# What the server expects in a V11 credential scope by default (`serve --signing-region`,
# `--signing-service`).
V11_REGION, V11_SERVICE = "cn-north-4", "dms"


class SdkServer(Server):
    def client(self, cred, algorithm=None, retry_times=0):
        """The official Python SDK, pointed at this server, signing with `cred` in `algorithm`
        (a SigningAlgorithm, or "v11" for derived AK/SK), and retrying a 429 `retry_times`
        times, as the SDK's HttpConfig does."""
        cfg = HttpConfig.get_default_config()
        cfg.ignore_ssl_verification = True
        cfg.timeout = (5, 20)
        cfg.retry_times = retry_times
        ak, sk, project = cred["access_key"], cred["secret_key"], cred["project_id"]
        credentials = BasicCredentials(ak, sk, project)
        builder = KafkaClient.new_builder().with_http_config(cfg)
        if algorithm == "v11":
            # Derived AK/SK: the region's id and the builder's service name make the scope; the
            # Kafka client names no service of its own, so the caller does (as IoTDA's does).
            credentials.with_derived_predicate(lambda request: True)
            builder._with_derived_auth_service_name(V11_SERVICE)
            return builder.with_credentials(credentials).with_region(Region(V11_REGION, self.url)).build()
        if algorithm is not None:
            cfg.signing_algorithm = algorithm
        return builder.with_credentials(credentials).with_endpoints([self.url]).build()
