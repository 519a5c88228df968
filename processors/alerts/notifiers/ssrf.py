"""SSRF checks for webhook-style destinations (Slack, PagerDuty, generic webhooks).

A URL must be ``http``/``https`` with a host; every address the host resolves to must be
globally routable: loopback, link-local (cloud metadata at 169.254.169.254), private, shared
(100.64/10), unspecified, multicast and reserved targets are refused unless the config's
``alerts.ssrf_allowlist`` admits them (a hostname, an IP, or a CIDR). Checked at load (literal
addresses and ``localhost``; names that do not resolve are left to send time) and again right
before each send (after DNS resolution). Redirects are never followed by the notifiers.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

__all__ = ["SsrfError", "SsrfPolicy"]

Resolver = Callable[[str, int], Sequence[str]]


class SsrfError(ValueError):
    """A destination the SSRF policy refuses."""


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class SsrfPolicy:
    """Refuses non-global destinations unless allowlisted."""

    def __init__(self, allowlist: Iterable[str] = (), *, resolver: Resolver = _resolve) -> None:
        self._hosts: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allowlist:
            try:
                self._networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                self._hosts.add(entry.strip().lower().rstrip("."))
        self._resolver = resolver

    def _split(self, url: str) -> tuple[str, int]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise SsrfError(f"scheme must be http or https, got {parts.scheme or 'none'!r}")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise SsrfError("URL has no host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise SsrfError("URL has an invalid port") from None
        return host, port

    def _address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        mapped = getattr(ip, "ipv4_mapped", None)
        if mapped is not None:
            ip = mapped
        if any(ip in net for net in self._networks):
            return True
        return ip.is_global and not ip.is_multicast

    def check_at_load(self, url: str) -> None:
        """Refuse what can be refused without DNS (scheme, literal addresses, localhost)."""
        host, _ = self._split(url)
        if host in self._hosts:
            return
        if host == "localhost" or host.endswith(".localhost"):
            if not self._address_allowed("127.0.0.1"):
                raise SsrfError(f"{host} is loopback; add it to alerts.ssrf_allowlist to allow it")
            return
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return  # a name: resolved and checked at send time
        if not self._address_allowed(host.strip("[]")):
            raise SsrfError(
                f"{host} is not a public address (loopback, link-local or private);"
                " add it to alerts.ssrf_allowlist to allow it"
            )

    def check_at_send(self, url: str) -> None:
        """Resolve the host and refuse if any address is not allowed."""
        host, port = self._split(url)
        if host in self._hosts:
            return
        try:
            addresses = self._resolver(host.strip("[]"), port)
        except OSError as exc:
            raise SsrfError(f"cannot resolve {host}: {exc}") from None
        for address in addresses:
            if not self._address_allowed(address):
                raise SsrfError(f"{host} resolves to {address}, which is not a public address")
