"""AWS Signature Version 4 verification, as the ``execute-api`` service checks it.

tidings knows one access key id and its secret. A request signed with them
(``Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/execute-api/aws4_request,
SignedHeaders=..., Signature=...``) is verified by signing the request as
received again: the canonical request (method, the path as sent, encoded once
more as AWS does for every service but S3, the sorted query, the signed
headers, the SHA-256 of the body actually received), the string to sign with
the request's date and scope, the key derived from the secret. The two
signatures are compared in constant time. The request's ``X-Amz-Date`` must be
within ``window`` seconds of the server's clock. Any region is accepted (it
is part of what is signed); the service must be ``execute-api``.

Failures raise ``SignatureError`` with AWS's error type and message, so an
AWS SDK reports them as it would against API Gateway.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_FIELD = re.compile(r"\s*(Credential|SignedHeaders|Signature)\s*=\s*([^,\s]*)\s*")


class SignatureError(Exception):
    """A request that is not validly signed; ``kind`` is AWS's error type."""

    def __init__(self, kind: str, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail or message
        """For the server's log: may say more than the client is told."""


def incomplete(message: str) -> SignatureError:
    return SignatureError("IncompleteSignatureException", message)


@dataclass(frozen=True, slots=True)
class Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @classmethod
    def parse(cls, header: str) -> Authorization:
        algorithm, _, rest = header.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise incomplete(f"Unsupported signature algorithm {algorithm!r:.40}")
        fields: dict[str, str] = {}
        for part in rest.split(","):
            match = _FIELD.fullmatch(part)
            if match is None:
                raise incomplete(f"Authorization header has a malformed part: {part.strip()!r:.60}")
            fields[match[1]] = match[2]
        for name in ("Credential", "SignedHeaders", "Signature"):
            if not fields.get(name):
                raise incomplete(f"Authorization header requires '{name}' parameter.")
        scope = fields["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
            raise incomplete(
                "Credential should be scoped to a valid region, service and "
                "aws4_request terminator."
            )
        return cls(
            access_key_id=scope[0],
            date=scope[1],
            region=scope[2],
            service=scope[3],
            signed_headers=tuple(fields["SignedHeaders"].split(";")),
            signature=fields["Signature"].lower(),
        )

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request as it arrived: the path and query exactly as sent (still percent-encoded)."""

    method: str
    raw_path: str
    raw_query: str
    headers: tuple[tuple[str, str], ...]
    """Every header line, in order; names in any case."""
    body: bytes

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]


def canonical_path(raw_path: str) -> str:
    """Dot segments and empty segments removed, then URI-encoded (a second time)."""
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    path = "/" + "/".join(segments)
    if segments and raw_path.endswith("/"):
        path += "/"
    return quote(path, safe="/~")


def canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_request(request: SignedRequest, signed_headers: Iterable[str]) -> str:
    lines = [request.method.upper(), canonical_path(request.raw_path)]
    lines.append(canonical_query(request.raw_query))
    names = list(signed_headers)
    for name in names:
        values = request.header_values(name)
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}")
    lines.append("")
    lines.append(";".join(names))
    lines.append(hashlib.sha256(request.body).hexdigest())
    return "\n".join(lines)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature(secret: str, auth: Authorization, amz_date: str, canonical: str) -> str:
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, auth.scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret).encode(), auth.date)
    for part in (auth.region, auth.service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Verifier:
    access_key_id: str
    secret_access_key: str
    window: float = 15 * 60.0

    def verify(self, request: SignedRequest, *, now: datetime | None = None) -> str:
        """The access key id the request is signed with, or ``SignatureError``."""
        headers = request.header_values("authorization")
        if len(headers) != 1:
            raise SignatureError(
                "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        auth = Authorization.parse(headers[0])
        if not hmac.compare_digest(auth.access_key_id.encode(), self.access_key_id.encode()):
            raise SignatureError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                detail=f"unknown access key id {auth.access_key_id[:32]!r}",
            )
        if auth.service != SERVICE:
            raise SignatureError(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{SERVICE}'.",
            )
        names = auth.signed_headers
        if list(names) != sorted(set(names)) or "host" not in names:
            raise incomplete("SignedHeaders must be sorted, lowercase and include host.")
        for name in names:
            if not request.header_values(name):
                raise incomplete(f"Signed header {name!r:.40} is missing from the request.")
        amz_date = _amz_date(request, names)
        if amz_date[:8] != auth.date:
            raise SignatureError(
                "InvalidSignatureException",
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{auth.date}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
        now = now or datetime.now(UTC)
        if abs((now - signed_at).total_seconds()) > self.window:
            minutes = int(self.window // 60)
            raise SignatureError(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than "
                f"{now.strftime(_AMZ_DATE)} ({now.strftime(_AMZ_DATE)} - {minutes} min.)"
                if signed_at < now
                else f"Signature not yet current: {amz_date} is still later than "
                f"{now.strftime(_AMZ_DATE)} ({now.strftime(_AMZ_DATE)} + {minutes} min.)",
            )
        expected = signature(
            self.secret_access_key, auth, amz_date, canonical_request(request, names)
        )
        if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
            raise SignatureError(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method. Consult the "
                "service documentation for details.",
                detail="signature mismatch",
            )
        return auth.access_key_id


def _amz_date(request: SignedRequest, names: tuple[str, ...]) -> str:
    values = request.header_values("x-amz-date")
    if values and "x-amz-date" in names:
        value = values[0].strip()
    else:
        dates = request.header_values("date")
        if not dates or "date" not in names:
            raise incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header."
            )
        try:
            value = datetime.strptime(dates[0].strip(), "%a, %d %b %Y %H:%M:%S GMT").strftime(
                _AMZ_DATE
            )
        except ValueError:
            raise incomplete(f"Date header {dates[0]!r:.40} is not an HTTP date") from None
    try:
        datetime.strptime(value, _AMZ_DATE)
    except ValueError:
        raise incomplete(f"X-Amz-Date {value!r:.40} must be YYYYMMDD'T'HHMMSS'Z'") from None
    return value
