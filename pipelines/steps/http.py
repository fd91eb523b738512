"""The ``http`` step: one HTTP request with urllib, JSON in and out.

Failures are classified for the retry policy: 5xx, 429, connection errors and timeouts may
succeed on another attempt; other 4xx will not. Every request carries an ``Idempotency-Key``
so a server can recognise a retried or redelivered call.

Every connection, the first and each redirect's, goes through the step context's egress policy
(``pipelines.egress``): the host is resolved once, the address is checked, and the socket is
opened to that checked address; the Host header, TLS SNI and certificate check keep the host
name. A refusal fails the step for good with code ``egress_denied``. No proxy is used, from the
environment or elsewhere: a proxy would hide the real target from the check.
"""

from __future__ import annotations

import functools
import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from pipelines import errors as E
from pipelines.egress import EgressPolicy
from pipelines.errors import Issue, StepFailed
from pipelines.steps.base import Field, StepContext, StepType
from pipelines.steps.registry import register_step_type
from pipelines.templating import has_template

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
MAX_BODY_BYTES = 10 * 1024 * 1024
EXCERPT_CHARS = 500
MAX_URL_CHARS = 8192  # what common servers accept in a request line, and more
USER_AGENT = "flowplane-http-step/1"



class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, egress: EgressPolicy, **kwargs):
        super().__init__(*args, **kwargs)
        self._egress = egress

    def connect(self) -> None:
        self.sock = self._egress.connect(self.host, self.port, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, egress: EgressPolicy, **kwargs):
        super().__init__(*args, **kwargs)
        self._egress = egress

    def connect(self) -> None:
        sock = self._egress.connect(self.host, self.port, self.timeout)
        # The certificate is checked against the host name, not the address connected to.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, egress: EgressPolicy):
        super().__init__()
        self._egress = egress

    def http_open(self, req):
        return self.do_open(_GuardedHTTPConnection, req, egress=self._egress)


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The default verifying context (system CAs, or SSL_CERT_FILE when set), built once."""
    return ssl.create_default_context()


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, egress: EgressPolicy):
        super().__init__(context=tls_context())
        self._egress = egress

    def https_open(self, req):
        return self.do_open(_GuardedHTTPSConnection, req, context=self._context, egress=self._egress)


def opener_for(egress: EgressPolicy) -> urllib.request.OpenerDirector:
    """An opener for HTTP(S) only (urllib's default would also read file:// and ftp://), with
    no proxy handler, whose every connection, redirects included, passes ``egress``."""
    opener = urllib.request.OpenerDirector()
    for handler in (_GuardedHTTPHandler(egress), _GuardedHTTPSHandler(egress),
                    urllib.request.HTTPRedirectHandler(), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"url {url!r} must be an absolute http:// or https:// URL"
    if "@" in parts.netloc:
        # urllib would take "user@host" for the host name; credentials belong in a header.
        return f"url {url!r} holds credentials (user@host); send them in a header, e.g. Authorization"
    try:
        parts.port
    except ValueError:
        return f"url {url!r} has an invalid port; write host:1-65535"
    if not parts.hostname:
        return f"url {url!r} has no host name"
    return None


@register_step_type
class HttpStep(StepType):
    name = "http"
    reads_context = False
    description = "Send one HTTP request; a JSON response body becomes the output."
    config_schema = {
        "url": Field("string", required=True, description="absolute http(s) URL",
                     schema={"maxLength": MAX_URL_CHARS}),
        "method": Field("string", default="GET", choices=METHODS),
        "headers": Field("object", default={},
                         description='header name -> string value or {"$secret": name}',
                         schema={"additionalProperties": {"type": "string"}}),
        "json": Field("any", description="request body, sent as JSON"),
        "timeout_s": Field("number", default=10, minimum=0.001, maximum=3600),
    }

    def validate_config(self, config: Any, path: str = "config") -> list[Issue]:
        issues = super().validate_config(config, path)
        if not isinstance(config, dict):
            return issues
        url = config.get("url")
        if isinstance(url, str) and not has_template(url) and len(url) <= MAX_URL_CHARS:
            problem = _url_problem(url)
            if problem:
                issues.append(Issue(f"{path}.url", problem, E.INVALID_CONFIG))
        return issues

    def run(self, config: dict, ctx: StepContext) -> Any:
        config = self.with_defaults(config)
        url, method = config["url"], str(config["method"]).upper()
        problem = _url_problem(url) if isinstance(url, str) else f"url must be a string: {url!r}"
        if problem:
            raise StepFailed(problem, retryable=False, details={"url": str(url)})
        headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        headers.setdefault("User-Agent", USER_AGENT)
        headers.setdefault("Accept", "application/json")
        headers["Idempotency-Key"] = ctx.idempotency_key
        data = None
        if config.get("json") is not None:
            data = json.dumps(config["json"], separators=(",", ":")).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        timeout = float(config["timeout_s"])
        remaining = ctx.remaining_s()
        if remaining is not None:
            if remaining <= 0:
                raise StepFailed(f"{method} {url}: step deadline passed before the request",
                                 retryable=True, details={"url": url, "reason": "deadline"})
            timeout = min(timeout, remaining)

        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        base = {"url": url, "method": method}
        try:
            with opener_for(ctx.egress).open(request, timeout=timeout) as response:
                status = response.status
                body = _decode(response.read(MAX_BODY_BYTES + 1), response.headers)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read(MAX_BODY_BYTES + 1)
            except Exception:  # the error body is best effort; the status already says it
                raw = b""
            excerpt = raw[:EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]
            retryable = status >= 500 or status == 429
            raise StepFailed(f"{method} {url} returned HTTP {status}: {excerpt}",
                             retryable=retryable,
                             details={**base, "status": status, "body": excerpt}) from None
        except (TimeoutError, socket.timeout) as exc:
            raise StepFailed(f"{method} {url} timed out after {timeout:g}s", retryable=True,
                             details={**base, "reason": "timeout"}) from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            is_timeout = isinstance(reason, (TimeoutError, socket.timeout))
            raise StepFailed(
                f"{method} {url} " + (f"timed out after {timeout:g}s" if is_timeout
                                      else f"failed to connect: {reason}"),
                retryable=True,
                details={**base, "reason": "timeout" if is_timeout else "connection",
                         "error": str(reason)},
            ) from exc
        except (ConnectionError, OSError) as exc:
            raise StepFailed(f"{method} {url} failed: {exc}", retryable=True,
                             details={**base, "reason": "connection", "error": str(exc)}) from exc

        if not 200 <= status < 300:
            # Redirects are followed; anything else outside 2xx that urllib let through
            # (e.g. a 3xx without Location) is still a failure.
            raise StepFailed(f"{method} {url} returned HTTP {status}", retryable=False,
                             details={**base, "status": status})
        return {"status": status, "body": body}


def _decode(raw: bytes, headers) -> Any:
    if len(raw) > MAX_BODY_BYTES:
        raise StepFailed(f"response body is larger than {MAX_BODY_BYTES} bytes; "
                         "fetch large payloads outside the step output", retryable=False)
    charset = headers.get_content_charset() or "utf-8"
    text = raw.decode(charset, "replace")
    content_type = (headers.get_content_type() or "").lower()
    if content_type == "application/json" or content_type.endswith("+json") or (
        text[:1] in ("{", "[")
    ):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text
