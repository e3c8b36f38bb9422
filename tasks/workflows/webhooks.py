"""The webhook action: an HTTP POST with a timeout, bounded retries, an Idempotency-Key and an SSRF guard.

The target host is resolved once, every address it resolves to is checked (private, loopback, link-local,
reserved and multicast ranges are refused unless the workspace allows them), and the request is then sent to
the checked address itself with the original Host header and TLS server name. Connecting by name after the
check would let a DNS answer that changes between the two lookups (DNS rebinding) reach an internal address.
Redirects are not followed for the same reason.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

USER_AGENT = "artisan-workflows/1.0"
# Statuses worth another attempt: the receiver is overloaded or briefly down. Other 4xx are the map's fault.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_SECONDS = 0.5


class WebhookRefused(ValueError):
    """The target is not allowed (private address without the workspace's permission): never retried."""


class WebhookRejected(ValueError):
    """The receiver answered with a final error status (4xx other than 408/425/429): never retried."""


class WebhookUnavailable(RuntimeError):
    """Every attempt failed with a network error, a timeout or a retryable status: the job may retry later."""


@dataclass(frozen=True)
class WebhookDelivery:
    status_code: int
    attempts: int
    address: str


def is_public_address(address: str) -> bool:
    """True when an IP address is routable on the public internet (not private, loopback, link-local...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_target(url: str, allow_private: bool) -> str:
    """Resolve the URL's host and return the address to connect to; raise WebhookRefused for a forbidden one."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise WebhookRefused("webhook URL has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise WebhookUnavailable(f"cannot resolve webhook host: {error.strerror}") from error
    # IPv4 first: a host without IPv6 routing would otherwise fail on an AAAA answer.
    addresses = sorted(
        {str(info[4][0]) for info in infos}, key=lambda a: (ipaddress.ip_address(a.split("%")[0]).version, a)
    )
    if not addresses:
        raise WebhookUnavailable("webhook host resolved to no address")
    private = [address for address in addresses if not is_public_address(address)]
    if private and not allow_private:
        # Refuse when any answer is private: the next lookup might pick that one.
        raise WebhookRefused(
            f"webhook target {host} resolves to a private or loopback address ({private[0]}); "
            "this workspace does not allow private webhook targets"
        )
    return addresses[0]


def url_origin(url: str) -> str:
    """scheme://host[:port] of a URL: enough to say where a webhook went without its path's secrets."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{literal}{f':{parts.port}' if parts.port else ''}"


def _pinned_url(url: str, address: str) -> tuple[str, str]:
    """The URL with its host replaced by the checked address, and the original Host header value."""
    parts = urlsplit(url)
    host_header = parts.netloc.rsplit("@", 1)[-1]
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header


def post_webhook(
    url: str,
    body: Any,
    *,
    idempotency_key: str,
    headers: dict[str, str],
    allow_private: bool,
    timeout_seconds: float,
    max_attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookDelivery:
    """POST ``body`` as JSON; retry network errors and retryable statuses up to ``max_attempts`` times.

    Every attempt carries the same Idempotency-Key, so a receiver that honours it acts once even when an
    attempt timed out after it had already been processed, or a worker died after the POST but before the
    outcome was recorded.
    """
    address = resolve_target(url, allow_private)
    pinned, host_header = _pinned_url(url, address)
    hostname = urlsplit(url).hostname or ""
    request_headers = {
        **headers,
        "Host": host_header,
        "Idempotency-Key": idempotency_key,
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
    }
    last_problem = "no attempt made"
    with httpx.Client(timeout=httpx.Timeout(timeout_seconds), follow_redirects=False, trust_env=False) as client:
        for attempt in range(1, max_attempts + 1):
            try:
                response = client.post(
                    pinned,
                    json=body,
                    headers=request_headers,
                    # TLS is checked against the name in the URL, not the pinned address.
                    extensions={"sni_hostname": hostname},
                )
            except httpx.TransportError as error:
                last_problem = f"{type(error).__name__}"
            else:
                if response.status_code < 300:
                    return WebhookDelivery(status_code=response.status_code, attempts=attempt, address=address)
                if response.status_code not in RETRYABLE_STATUSES:
                    raise WebhookRejected(f"webhook answered {response.status_code}")
                last_problem = f"status {response.status_code}"
            if attempt < max_attempts:
                sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
    raise WebhookUnavailable(f"webhook failed after {max_attempts} attempts: {last_problem}")
