"""Signs fixed requests with every signing mode of the official Python SDK (huaweicloudsdkcore)
and writes them to signing_vectors.json, which the server's unit tests verify
(src/auth/mod.rs, `sdk_vectors`).

    .venv/bin/python tests/sdk/make_signing_vectors.py > tests/sdk/signing_vectors.json

HMAC and V11 signatures are deterministic; ECDSA and SM2 ones draw a random nonce, so each run
writes different (equally valid) signatures for those.
"""

import json
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import (
    DerivationAKSKSigner,
    P256SHA256Signer,
    SM2SM3Signer,
    SM3Signer,
    Signer,
)

# Huawei Cloud's documentation example key pair.
AK = "QTWAOYTTINDUT2QVKYUC"
SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
DATE = "20240102T030405Z"
HOST = "dms.cn-north-4.myhuaweicloud.com"
PROJECT = "0123456789abcdef0123456789abcdef"
INSTANCE = "11111111-2222-3333-4444-555555555555"
REGION, SERVICE = "cn-north-4", "dms"

MODES = {
    "SDK-HMAC-SHA256": Signer,
    "SDK-HMAC-SM3": SM3Signer,
    "SDK-ECDSA-P256-SHA256": P256SHA256Signer,
    "SDK-SM2-SM3": SM2SM3Signer,
    "V11-HMAC-SHA256": DerivationAKSKSigner,
}

REQUESTS = [
    ("GET", f"/v2/{PROJECT}/instances/{INSTANCE}/tasks",
     [("start", 1), ("limit", 10), ("begin_time", "20240101000000")], None),
    ("POST", f"/v2/{PROJECT}/instances/{INSTANCE}/scheduled-tasks",
     [], '{"name":"restart","execute_at":"20240103000000"}'),
    ("DELETE", f"/v2/{PROJECT}/instances/{INSTANCE}/tasks/8abfa7b372160bfd0172165864064079", [], None),
]


def sign(mode, ak, method, path, query, body, region=REGION, service=SERVICE):
    headers = {"Content-Type": "application/json", "X-Project-Id": PROJECT, "X-Sdk-Date": DATE}
    req = SdkRequest(method=method, schema="https", host=HOST, resource_path=path,
                     query_params=list(query), header_params=headers, body=body)
    signer = MODES[mode](BasicCredentials(ak, SK))
    if mode == "V11-HMAC-SHA256":
        signer.sign(req, service, region)
    else:
        signer.sign(req)
    query_string = req.uri.split("?", 1)[1] if "?" in req.uri else ""
    return {
        "mode": mode,
        "access_key": ak,
        "secret_key": SK,
        "method": method,
        "path": path,
        "query": query_string,
        # As sent: the SDK's own header names, values as it wrote them.
        "headers": {k: str(v) for k, v in req.header_params.items()},
        "body": body.decode() if isinstance(body, bytes) else (body or ""),
        "region": region if mode == "V11-HMAC-SHA256" else None,
        "service": service if mode == "V11-HMAC-SHA256" else None,
    }


def sm2_access_key_with_a_short_coordinate():
    """An access key whose SM2 public point has a coordinate starting with a zero byte: the
    Python SDK hashes such a point without its leading zeros (the standard pads it)."""
    for i in range(100000):
        ak = "SM2ZEROCOORD%08d" % i
        x, y = SM2SM3Signer(BasicCredentials(ak, SK)).get_signing_key()._public_key
        if x < 1 << 248 or y < 1 << 248:
            return ak
    raise SystemExit("no such key found")


def main():
    vectors = []
    for mode in MODES:
        for method, path, query, body in REQUESTS:
            vectors.append(sign(mode, AK, method, path, query, body))
    short = sm2_access_key_with_a_short_coordinate()
    for method, path, query, body in REQUESTS:
        vectors.append(sign("SDK-SM2-SM3", short, method, path, query, body))
    # Signed for another region and service than the server expects: refused as wrong_scope.
    wrong = sign("V11-HMAC-SHA256", AK, *REQUESTS[0], region="eu-west-101", service="kafka")
    wrong["expect"] = "wrong_scope"
    vectors.append(wrong)
    json.dump({"date": DATE, "region": REGION, "service": SERVICE, "vectors": vectors}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
