"""SigV4 verification against requests signed by botocore's own signer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tidings.aws.sigv4 import SignatureError, SignedRequest, Verifier, canonical_path

KEY_ID = "AKIDTIDINGSTEST"
SECRET = "tidings-test-secret-" + "s" * 20
VERIFIER = Verifier(KEY_ID, SECRET)


def signed(
    url: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    key_id: str = KEY_ID,
    secret: str = SECRET,
    service: str = "execute-api",
    region: str = "us-east-1",
) -> SignedRequest:
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(Credentials(key_id, secret), service, region).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers = (("Host", parts.netloc), *prepared.headers.items())
    return SignedRequest(method, parts.path, parts.query, headers, body)


def refused(request: SignedRequest, kind: str, **kwargs: datetime) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        VERIFIER.verify(request, **kwargs)
    assert caught.value.kind == kind, caught.value.message
    return caught.value


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/@connections/abcdEFGH_-12345678",
        "http://127.0.0.1:8000/production/@connections/abcdEFGH12345678",
        "http://127.0.0.1:8000/$default/@connections/x?b=2&a=1&a=0",
        "http://host/@connections/with%3Dequals%2Fslash",
        "http://host/a/./b/../@connections/x",
    ],
)
def test_botocore_signatures_verify(url: str) -> None:
    assert VERIFIER.verify(signed(url, b'{"hello":"world"}')) == KEY_ID
    assert VERIFIER.verify(signed(url, method="GET")) == KEY_ID


def test_any_region_is_accepted() -> None:
    request = signed("http://h/@connections/x", region="eu-central-1")
    assert VERIFIER.verify(request) == KEY_ID


def test_wrong_secret_is_an_invalid_signature() -> None:
    error = refused(signed("http://h/@connections/x", secret="w" * 40), "InvalidSignatureException")
    assert error.message.startswith("The request signature we calculated does not match")


def test_unknown_key_is_unrecognized() -> None:
    refused(signed("http://h/@connections/x", key_id="AKIDOTHER"), "UnrecognizedClientException")


def test_other_service_is_refused() -> None:
    refused(signed("http://h/@connections/x", service="s3"), "InvalidSignatureException")


def test_tampering_with_body_path_query_or_a_signed_header_is_refused() -> None:
    good = signed("http://h/@connections/x?a=1", b"payload")
    changes = [
        SignedRequest(good.method, good.raw_path, good.raw_query, good.headers, b"payl0ad"),
        SignedRequest(good.method, "/@connections/y", good.raw_query, good.headers, good.body),
        SignedRequest(good.method, good.raw_path, "a=2", good.headers, good.body),
        SignedRequest("DELETE", good.raw_path, good.raw_query, good.headers, good.body),
        SignedRequest(
            good.method,
            good.raw_path,
            good.raw_query,
            tuple((k, "other" if k == "Host" else v) for k, v in good.headers),
            good.body,
        ),
    ]
    for request in changes:
        refused(request, "InvalidSignatureException")


def test_date_window_is_fifteen_minutes() -> None:
    request = signed("http://h/@connections/x")
    date = dict((k.lower(), v) for k, v in request.headers)["x-amz-date"]
    signed_at = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert VERIFIER.verify(request, now=signed_at + timedelta(minutes=14)) == KEY_ID
    assert VERIFIER.verify(request, now=signed_at - timedelta(minutes=14)) == KEY_ID
    late = refused(request, "InvalidSignatureException", now=signed_at + timedelta(minutes=16))
    assert late.message.startswith("Signature expired")
    early = refused(request, "InvalidSignatureException", now=signed_at - timedelta(minutes=16))
    assert early.message.startswith("Signature not yet current")


def test_malformed_authorization_headers() -> None:
    good = signed("http://h/@connections/x")
    others = tuple((k, v) for k, v in good.headers if k.lower() != "authorization")

    def with_auth(value: str) -> SignedRequest:
        return SignedRequest(
            "POST", good.raw_path, "", (*others, ("Authorization", value)), good.body
        )

    refused(SignedRequest("POST", "/", "", others, b""), "MissingAuthenticationTokenException")
    for value in (
        "AWS4-HMAC-SHA1 Credential=x",
        "AWS4-HMAC-SHA256 Credential=AKIDTIDINGSTEST/20240101/us-east-1/execute-api",
        "AWS4-HMAC-SHA256 Credential=AKIDTIDINGSTEST/20240101/r/execute-api/aws4_request",
        "AWS4-HMAC-SHA256 garbage",
    ):
        refused(with_auth(value), "IncompleteSignatureException")
    auth = dict((k.lower(), v) for k, v in good.headers)["authorization"]
    unsigned_host = auth.replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date")
    refused(with_auth(unsigned_host), "IncompleteSignatureException")
    no_date = SignedRequest(
        "POST",
        good.raw_path,
        "",
        tuple((k, v) for k, v in good.headers if k.lower() != "x-amz-date"),
        good.body,
    )
    refused(no_date, "IncompleteSignatureException")


def test_canonical_path_encodes_once_more_and_removes_dot_segments() -> None:
    assert canonical_path("/production/@connections/a%3Db") == "/production/%40connections/a%253Db"
    assert canonical_path("//a/./b/../c/") == "/a/c/"
    assert canonical_path("") == "/"
