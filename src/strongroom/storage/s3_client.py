"""A thin S3 client of our own, on httpx: signed requests and typed errors.

Every request is signed (s3_sign.py) with the real SHA-256 of its body.
Answers are hostile until they make sense: an error's XML body is read up
to _ERROR_BODY_BYTES, a listing or multipart answer up to the cap its
caller gives, and XML goes through defusedxml. Errors are typed so the
retry decorator knows what may pass (5xx, SlowDown, a dropped connection,
a body damaged on the way) and what never will (refused credentials, a
missing bucket, a wrong region or endpoint), which fails at once.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import httpx
from defusedxml import ElementTree as SafeET

from strongroom import __version__
from strongroom.errors import (AuthenticationFailed, ObjectNotFound, StorageError, StorageUnreachable,
                               TransientStorageError)
from strongroom.storage.connect_failures import classify_connect_failure
from strongroom.storage.s3_sign import EMPTY_SHA256, S3Credentials, canonical_query, sign, uri_encode

__all__ = ["S3Client", "S3Credentials", "S3Endpoint", "S3Error", "xml_root", "text_of"]

_ERROR_BODY_BYTES = 64 * 1024
# Answers read whole: a multipart upload's id, its completion, a bucket's.
SMALL_ANSWER_BYTES = 1024 * 1024
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_REFUSED = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
                      "ExpiredToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem",
                      "InvalidSecurity", "UserSuspended"})
# Trouble that passes: the service's own, or a body damaged on the way
# (the digests and the signed hash catch it; the body is sent again).
_TRANSIENT = frozenset({"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                        "ThrottlingException", "BadDigest", "InvalidDigest",
                        "XAmzContentSHA256Mismatch", "IncompleteBody", "OperationAborted"})
_THROTTLED = frozenset({"SlowDown", "Throttling", "ThrottlingException"})


@dataclass(frozen=True)
class S3Error:
    status: int
    code: str
    message: str


def xml_root(body: bytes, what: str, failure: type[StorageError]):
    """The parsed root of an XML answer; a broken or hostile document is `failure`."""
    try:
        return SafeET.fromstring(body)
    except Exception as e:  # ParseError, or defusedxml refusing entities and DTDs
        raise failure(f"{what}: the server's answer is not well-formed XML ({type(e).__name__})") from None


def text_of(element, tag: str) -> str | None:
    """The text of a direct child, with or without the S3 namespace."""
    found = element.find(_NS + tag)
    if found is None:
        found = element.find(tag)
    return None if found is None else (found.text or "")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class S3Endpoint:
    scheme: str
    netloc: str  # host[:port]
    region: str
    path_style: bool

    @classmethod
    def parse(cls, url: str, region: str, path_style: bool) -> "S3Endpoint":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StorageError(f"S3 endpoint {url!r} is not an http:// or https:// URL")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        return cls(parts.scheme, netloc, region, path_style)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def address(self, bucket: str, key: str) -> tuple[str, str]:
        """(host, encoded path) of an object, or of the bucket itself when `key` is ''."""
        if not bucket:
            return self.netloc, "/"
        if self.path_style:
            return self.netloc, "/" + uri_encode(bucket, False) + ("/" + uri_encode(key, True) if key else "")
        return f"{bucket}.{self.netloc}", "/" + uri_encode(key, True)


class S3Client:
    """Signed requests to one endpoint with one set of credentials; thread-safe."""

    def __init__(self, endpoint: S3Endpoint, credentials: S3Credentials, *, timeout: float = 60.0,
                 connections: int = 8, gate: Callable[[], None] | None = None) -> None:
        self.endpoint = endpoint
        self._credentials = credentials
        self._gate = gate
        self.target = f"S3 endpoint {endpoint.netloc}"
        self.answered = False
        self._refused: AuthenticationFailed | None = None
        self._lock = threading.Lock()
        self.http_requests = 0
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 20.0)), follow_redirects=False,
            headers={"User-Agent": f"strongroom/{__version__}", "Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=connections + 2, max_keepalive_connections=connections + 2))

    def __enter__(self) -> "S3Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, bucket: str, key: str, what: str, *, query: dict[str, str] | None = None,
                body: bytes = b"", headers: dict[str, str] | None = None, stream: bool = False,
                passthrough: frozenset[int] = frozenset()) -> httpx.Response:
        """One signed request. 2xx, and statuses in `passthrough`, come back (the
        body unread with `stream`: the caller reads and closes); anything else
        is raised as a typed StorageError."""
        if self._refused is not None:
            raise AuthenticationFailed(str(self._refused))
        if self._gate is not None:
            self._gate()
        query = query or {}
        headers = dict(headers or {})
        host, path = self.endpoint.address(bucket, key)
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        headers.update(sign(method, host, path, query, headers, payload_hash, self._credentials,
                            self.endpoint.region))
        # The query goes as it was signed: httpx would encode it its own way.
        url = f"{self.endpoint.scheme}://{host}{path}" + (f"?{canonical_query(query)}" if query else "")
        with self._lock:
            self.http_requests += 1
        try:
            request = self._client.build_request(method, url, content=body or None, headers=headers)
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as e:
            raise TransientStorageError(f"{what}: timed out ({type(e).__name__})", reason="timed out") from None
        except httpx.ConnectError as e:
            failure = classify_connect_failure(e, host.rsplit(":", 1)[0], host)
            explanation = failure.explanation.replace("webdav+http://", "s3:http://")
            if failure.setup_mistake and not self.answered:
                raise StorageUnreachable(f"{what}: {explanation}") from None
            raise TransientStorageError(f"{what}: {explanation}", reason=failure.reason) from None
        except httpx.TransportError as e:
            raise TransientStorageError(f"{what}: connection failed ({type(e).__name__})",
                                        reason=f"connection failed ({type(e).__name__})") from None
        try:
            status = response.status_code
            if 200 <= status < 300 or status in passthrough:
                self.answered = True
                if stream:
                    return response
                return self._read_small(response, what)
            error = self._error_of(response, what)
        except httpx.TransportError as e:
            response.close()
            raise TransientStorageError(f"{what}: connection failed ({type(e).__name__})",
                                        reason=f"connection failed ({type(e).__name__})") from None
        except BaseException:
            response.close()
            raise
        response.close()
        raise self._typed(error, response, what, bucket, key)

    @staticmethod
    def _read_small(response: httpx.Response, what: str) -> httpx.Response:
        """The answer with its body read, which must be small: the answers
        read whole (to a PUT, a multipart step, a bucket) are a few hundred
        bytes, and a server sending more is not believed, nor held."""
        body = bytearray()
        try:
            for piece in response.iter_bytes():
                body += piece
                if len(body) > SMALL_ANSWER_BYTES:
                    raise StorageError(f"{what}: the service's answer runs past {SMALL_ANSWER_BYTES} bytes, "
                                       f"more than any answer to this request holds")
        finally:
            response.close()
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(body),
                              request=response.request)

    def _error_of(self, response: httpx.Response, what: str) -> S3Error:
        body = bytearray()
        if response.request.method != "HEAD":
            for piece in response.iter_bytes():
                body += piece
                if len(body) > _ERROR_BODY_BYTES:
                    break
        code, message = "", ""
        if body.lstrip().startswith(b"<"):
            try:
                root = SafeET.fromstring(bytes(body[:_ERROR_BODY_BYTES]))
                code = text_of(root, "Code") or ""
                message = text_of(root, "Message") or ""
            except Exception:
                pass
        if code:
            self.answered = True
        return S3Error(response.status_code, code, message[:200])

    def _typed(self, error: S3Error, response: httpx.Response, what: str, bucket: str, key: str) -> StorageError:
        status, code = error.status, error.code
        said = f"HTTP {status}" + (f" {code}" if code else "")
        if code in _THROTTLED or status == 429:
            reason = f"the service is throttling requests ({said})"
            return TransientStorageError(f"{what}: {reason}", _retry_after(response), throttled=True, reason=reason)
        if code in _TRANSIENT or (status >= 500 and code not in ("NotImplemented",)):
            reason = said
            return TransientStorageError(f"{what}: {reason}", _retry_after(response), reason=reason)
        if code in _REFUSED or (status == 403 and not code) or status == 401:
            refused = AuthenticationFailed(
                f"{what}: the S3 service refused the request ({said}): check the access key and secret "
                f"(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile) and their rights to bucket "
                f"{bucket!r}")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
                self._refused = refused
            return refused
        if code == "RequestTimeTooSkewed":
            return StorageError(f"{what}: the S3 service says this machine's clock is off ({said}): set the clock")
        if code == "NoSuchBucket":
            return StorageError(f"{what}: bucket {bucket!r} does not exist at {self.endpoint.url} ({said})")
        if code in ("NoSuchKey", "NoSuchUpload") or (status == 404 and key and not code
                                                      and response.request.method == "HEAD"):
            return ObjectNotFound(f"{key or bucket} does not exist")
        if status in (301, 302, 307, 308) or code in ("PermanentRedirect", "TemporaryRedirect",
                                                      "AuthorizationHeaderMalformed",
                                                      "IllegalLocationConstraintException"):
            where = response.headers.get("x-amz-bucket-region") or response.headers.get("Location") or ""
            return StorageError(f"{what}: the S3 service sends this bucket elsewhere ({said}"
                                f"{', ' + where if where else ''}): check the endpoint and the region "
                                f"(?region=NAME on the URL, or AWS_REGION)")
        if code == "EntityTooLarge" or status == 413:
            return StorageError(f"{what}: the S3 service refused the upload as too large ({said})")
        if not code:
            return StorageError(f"{what}: {self.endpoint.url} did not answer as an S3 service does (HTTP {status} "
                                f"{response.reason_phrase}, no S3 error code): check the endpoint URL")
        return StorageError(f"{what}: {said}: {error.message}" if error.message else f"{what}: {said}")

    # ---- buckets ----------------------------------------------------------------------

    def bucket_exists(self, bucket: str) -> bool:
        """HEAD the bucket: True, False for 404; anything else raises."""
        response = self.request("HEAD", bucket, "", f"look up bucket {bucket}", passthrough=frozenset({404}))
        return response.status_code != 404

    def create_bucket(self, bucket: str, *, object_lock: bool = False) -> None:
        headers = {"x-amz-bucket-object-lock-enabled": "true"} if object_lock else {}
        body = b""
        if self.endpoint.region not in ("us-east-1", "auto", ""):
            body = ('<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"<LocationConstraint>{self.endpoint.region}</LocationConstraint>"
                    "</CreateBucketConfiguration>").encode()
        response = self.request("PUT", bucket, "", f"create bucket {bucket}", body=body, headers=headers,
                                passthrough=frozenset({409}))
        if response.status_code == 409 and b"BucketAlreadyOwnedByYou" not in response.content:
            raise StorageError(f"create bucket {bucket}: the name is taken (HTTP 409)")


def content_md5(data: bytes | memoryview) -> str:
    import base64
    return base64.b64encode(hashlib.md5(data).digest()).decode()
