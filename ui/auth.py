"""The one auth rule for every way in (HTTP API, chat, MCP): on a loopback address no token is needed;
on any other address a bearer token is required, compared in constant time as bytes."""

from __future__ import annotations

import ipaddress
import secrets
import socket


def is_loopback(host: str) -> bool:
    """True only if every address `host` names is a loopback address (a name that does not resolve is not)."""
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def requires_token(host: str) -> bool:
    return not is_loopback(host)


def bearer_matches(header: str | None, token: str) -> bool:
    """An `Authorization: Bearer <token>` header; the scheme is case-insensitive (RFC 7235)."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return secrets.compare_digest(_raw(given.strip()), token.encode("utf-8", "surrogatepass"))


def _raw(header_value: str) -> bytes:
    """The bytes a client sent: servers decode header bytes as Latin-1, so that recovers them."""
    try:
        return header_value.encode("latin-1")
    except UnicodeEncodeError:
        return header_value.encode("utf-8", "surrogatepass")
