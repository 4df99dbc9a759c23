"""Where a destination may point: never at the studio's own network by default.

A destination's address is fetched by the server, and its answer is stored and shown, so a
destination pointing at 127.0.0.1, a link-local metadata service or a private address would
let a project admin read internal services (SSRF). The name is resolved and every address
checked when the destination is made, and again on every request, redirects included
(``GuardedSession``), since DNS can change after it was made, and once more on the address
each new connection actually reached, before anything is sent (DNS rebinding). Host names listed in
``DESTINATION_ALLOW_HOSTS`` (an intranet CMS, the tests' local receivers) are allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class UnsafeAddress(Exception):
    """The address resolves to a network the studio does not send to."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "private"
    return None


def allowed_host(host: str) -> bool:
    return host.lower().rstrip(".") in set(settings.DESTINATION_ALLOW_HOSTS)


def check_url(url: str, *, resolve: bool = True) -> None:
    """Raise UnsafeAddress when ``url``'s host is, or resolves to, a loopback, link-local,
    private or reserved address and is not in ``DESTINATION_ALLOW_HOSTS``. A name that does
    not resolve is left to the request (which fails to connect) when ``resolve`` finds none."""
    host = urlsplit(url).hostname or ""
    if not host:
        raise UnsafeAddress("The address has no host.")
    if allowed_host(host):
        return
    literal = True
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        literal = False
        if not resolve:
            return
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            return
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for ip in addresses:
        kind = _kind(ip)
        if kind:
            where = (
                f"{host} is a {kind} address"
                if literal
                else f"{host} resolves to {ip}, a {kind} address"
            )
            raise UnsafeAddress(
                f"{where}: destinations may not point at "
                "the studio's own network (an admin of the server can allow this host with "
                "CONTENTSTUDIO_DESTINATION_ALLOW_HOSTS)."
            )


def refuse_peer(host: str, peer: str) -> None:
    """Raise UnsafeAddress when the address a socket actually connected to is not one the
    studio sends to (``host``, the name asked for, is not allowed by name)."""
    if allowed_host(host):
        return
    kind = _kind(ipaddress.ip_address(peer.split("%", 1)[0]))
    if kind:
        raise UnsafeAddress(
            f"{host} resolves to {peer}, a {kind} address: destinations may not point at the "
            "studio's own network (an admin of the server can allow this host with "
            "CONTENTSTUDIO_DESTINATION_ALLOW_HOSTS)."
        )


class _PeerChecked:
    """Checks the address the new socket is connected to, before a byte is sent (and before
    TLS): a name that resolved to a public address for ``check_url`` and to a private one a
    moment later (DNS rebinding) is refused here."""

    host: str
    _tunnel_host: str | None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        if getattr(self, "_tunnel_host", None):
            return sock  # connected to a proxy configured by the server's admin
        try:
            refuse_peer(self.host, sock.getpeername()[0])
        except UnsafeAddress:
            sock.close()
            raise
        return sock


class _HTTPConnection(_PeerChecked, HTTPConnection):
    pass


class _HTTPSConnection(_PeerChecked, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class GuardedSession(requests.Session):
    """A session that checks every request's address just before it is sent: the first one
    and each redirect (``resolve_redirects`` sends them through ``send`` too), and again the
    address each new connection actually reached."""

    def __init__(self) -> None:
        super().__init__()
        self.mount("http://", _GuardedAdapter())
        self.mount("https://", _GuardedAdapter())

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        check_url(request.url or "")
        return super().send(request, **kwargs)
