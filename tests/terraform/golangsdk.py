"""A client that sends requests the way the Terraform provider's Go SDK (github.com/chnsz/golangsdk)
sends them, written from its sources (provider_client.go `doRequest`, signer/signer.go `Sign`):

- the headers set before signing: `Content-Type: application/json` when there is a JSON body,
  `Accept: application/json`, `User-Agent`, then the request's `MoreHeaders`, then `X-Sdk-Date`;
- every one of those headers is signed (`SignedHeaders` is the sorted lowercase list of all keys of
  the Go request's header map, which never holds Host);
- the query is re-encoded sorted (keys, then values), RFC 3986 escaping, and sent that way;
- the canonical URI is the escaped path with a trailing `/`;
- the body is Go's `json.Encoder` output: compact, map keys sorted, a trailing newline;
- `X-Project-Id` is set after signing, so it is sent unsigned; Go's transport then adds Host,
  Content-Length and `Accept-Encoding: gzip`, also unsigned.
"""

import gzip
import hashlib
import hmac
import http.client
import json
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, urlsplit

USER_AGENT = "terraform-provider-huaweicloud golangsdk/2.0.0"
DEFAULT_OK = {"GET": (200,), "HEAD": (200,), "POST": (200, 201, 202), "PUT": (200, 201, 202),
              "PATCH": (200, 202, 204), "DELETE": (200, 202, 204)}


def escape(s):
    """signer.go `escape`: everything but the RFC 3986 unreserved characters, %XX upper case."""
    return quote(s, safe="-_.~")


def canonical_query(query):
    pairs = parse_qsl(query, keep_blank_values=True)
    keys = sorted({k for k, _ in pairs})
    return "&".join(f"{escape(k)}={escape(v)}" for k in keys for v in sorted(v for kk, v in pairs if kk == k))


def canonical_uri(path):
    uri = "/".join(escape(seg) for seg in path.split("/"))
    return uri if uri.endswith("/") else uri + "/"


def go_json(body):
    """`json.NewEncoder(buf).Encode(map)` with SetEscapeHTML(false): compact, sorted keys, newline."""
    return (json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def sign(method, path, query, headers, payload, ak, sk, now=None):
    """signer.Sign: sets X-Sdk-Date, signs every header present, returns the Authorization value."""
    now = now or datetime.now(timezone.utc)
    headers["X-Sdk-Date"] = now.strftime("%Y%m%dT%H%M%SZ")
    lower = {k.lower(): v for k, v in headers.items()}
    signed = sorted(lower)
    canonical_headers = "".join(f"{k}:{lower[k].strip()}\n" for k in signed)
    canonical = "\n".join([
        method, canonical_uri(path), query, canonical_headers, ";".join(signed),
        hashlib.sha256(payload).hexdigest(),
    ])
    to_sign = "\n".join(["SDK-HMAC-SHA256", headers["X-Sdk-Date"], hashlib.sha256(canonical.encode()).hexdigest()])
    sig = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={';'.join(signed)}, Signature={sig}"


class Response:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    def json(self):
        return json.loads(self.raw) if self.raw else None


class UnexpectedResponse(Exception):
    """golangsdk's ErrUnexpectedResponseCode (ErrDefault400, ErrDefault404, …)."""

    def __init__(self, method, url, expected, resp):
        body = resp.json() if resp.raw.startswith(b"{") else {}
        super().__init__(f"{method} {url}: expected {expected}, got {resp.status}: {resp.raw[:300]!r}")
        self.status, self.body, self.error_code = resp.status, body, body.get("error_code")


class GoClient:
    """golangsdk's ServiceClient with AK/SK authentication (`AKSKAuthOptions`) for one project."""

    def __init__(self, endpoint, ak, sk, project_id, max_retries=0, backoff=None):
        self.endpoint = endpoint.rstrip("/") + "/"
        self.ak, self.sk, self.project_id = ak, sk, project_id
        self.sent = []  # (method, path?query, headers as sent) of every request, for assertions
        # The provider's `max_retries` (its default is 5): with it set, the provider gives golangsdk
        # MaxBackoffRetries and its retryBackoffFunc, and a 429 is sent again after a sleep of
        # 2^retries minutes (Retry-After is not read). `backoff(minutes)` does the sleeping here.
        self.max_retries = max_retries
        self.backoff = backoff

    def url(self, template, **ids):
        """`client.Endpoint + httpUrl` with `strings.ReplaceAll` of `{project_id}` and the others."""
        path = template.replace("{project_id}", self.project_id)
        for k, v in ids.items():
            path = path.replace("{" + k + "}", v)
        return self.endpoint + path

    def request(self, method, url, json_body=None, more_headers=None, ok_codes=None):
        """`ProviderClient.Request(method, url, &RequestOpts{...})`: doRequest, and on a 429 its
        retry through RetryBackoffFunc while fewer than MaxBackoffRetries were made."""
        retries = 0
        while True:
            try:
                return self._do_request(method, url, json_body, more_headers, ok_codes)
            except UnexpectedResponse as e:
                if e.status != 429 or self.max_retries <= 0 or retries >= self.max_retries:
                    raise
                self.backoff(min(30, 2 ** retries))
                retries += 1

    def _do_request(self, method, url, json_body, more_headers, ok_codes):
        parts = urlsplit(url)
        payload = go_json(json_body) if json_body is not None else b""
        headers = {}
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        headers["Accept"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        for k, v in (more_headers or {}).items():
            # MoreHeaders replace by canonical key, as http.Header.Set does; "" deletes.
            for old in [h for h in headers if h.lower() == k.lower()]:
                del headers[old]
            if v != "":
                headers[k] = v
        query = canonical_query(parts.query)  # the signer rewrites RawQuery: this is what is sent
        headers["Authorization"] = sign(method, parts.path, query, headers, payload, self.ak, self.sk)
        headers["X-Project-Id"] = self.project_id
        target = parts.path + ("?" + query if query else "")
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.putheader("Accept-Encoding", "gzip")
            if payload or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(payload)))
            conn.endheaders(payload or None)
            res = conn.getresponse()
            raw = res.read()
            if res.getheader("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            resp = Response(res.status, dict(res.getheaders()), raw)
        finally:
            conn.close()
        self.sent.append((method, target, headers))
        expected = ok_codes or DEFAULT_OK[method]
        if resp.status not in expected:
            raise UnexpectedResponse(method, url, expected, resp)
        return resp
