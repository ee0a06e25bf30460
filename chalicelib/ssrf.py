"""Server-side request forgery defence: which addresses a webhook may reach.

A destination's host name is resolved once, EVERY address it resolves to is checked, and the sender then connects
to a checked address itself, so a second lookup (DNS rebinding) cannot swap in an internal one. Inside Lambda the
runtime API listens on 127.0.0.1:9001 and the instance metadata service on 169.254.169.254, so loopback,
link-local and the rest are refused unless a destination explicitly allows private networks.

Allowing private networks (a development switch, for receivers on the developer's machine) never opens what
holds the function's credentials or drives its invocations: the metadata services (169.254.169.254,
169.254.170.2, fd00:ec2::254) and every other link-local address, in any IPv6 spelling, and the Lambda runtime
API (``AWS_LAMBDA_RUNTIME_API``, 127.0.0.1:9001 when unset) on any loopback or unspecified address.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.errors import RelayError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Most specific first: the first match names the reason.
_FORBIDDEN_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("169.254.169.254/32"), "metadata"),  # EC2 / Lambda instance metadata service
    (_V4("169.254.170.2/32"), "metadata"),  # ECS task metadata and credentials
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "cgnat"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved"),  # IETF protocol assignments (DS-Lite, NAT64 discovery, ...)
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved"),  # the retired 6to4 relay anycast
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

_FORBIDDEN_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("fd00:ec2::254/128"), "metadata"),  # EC2 instance metadata service over IPv6
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "private"),  # local-use NAT64: the embedded IPv4 is wherever the network puts it
    (_V6("100::/64"), "reserved"),  # discard-only
    (_V6("2001:2::/48"), "benchmarking"),
    (_V6("2001:10::/28"), "reserved"),  # ORCHID (deprecated)
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("5f00::/16"), "reserved"),  # SRv6 segment identifiers
    (_V6("fc00::/7"), "private"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "private"),  # site-local (deprecated)
    (_V6("ff00::/8"), "multicast"),
)

# Refused even when a destination allows private networks.
ALWAYS_REFUSED = frozenset({"metadata", "link-local"})
RUNTIME_API = "lambda-runtime-api"
_DEFAULT_RUNTIME_API = "127.0.0.1:9001"
# Addresses that reach this machine's own services.
_LOCAL_MACHINE = frozenset({"loopback", "unspecified"})

# IPv6 forms that carry an IPv4 address (and Teredo, 2001::/32): the IPv4 address decides.
_IPV4_MAPPED = _V6("::ffff:0:0/96")
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
# Everything outside global unicast is unassigned or special purpose.
_GLOBAL_UNICAST = _V6("2000::/3")


class WebhookAddressRefusedError(RelayError):
    """A webhook host resolves to an address the relay may not reach; ``reason`` says which kind."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"{host} resolves to {address} ({reason}); refused")
        self.host = host
        self.address = address
        self.reason = reason


def is_forbidden(ip: IPAddress) -> str | None:
    """Why a webhook may not connect to ``ip`` ("loopback", "private", "metadata", ...), or None if public."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(ip)
    return _v6_reason(ip)


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for network, reason in _FORBIDDEN_V4:
        if ip in network:
            return reason
    return None


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    for network, reason in _FORBIDDEN_V6:
        if ip in network:
            return reason
    if ip in _IPV4_MAPPED or ip in _NAT64:
        return _v4_reason(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    if ip in _SIX_TO_FOUR:
        return _v4_reason(ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFF_FFFF))
    teredo = ip.teredo
    if teredo is not None:
        server, client = teredo
        return _v4_reason(server) or _v4_reason(client)
    if ip not in _GLOBAL_UNICAST:
        return "reserved"
    return None


def resolve_public(host: str, port: int, *, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> list[str]:
    """Resolve ``host`` and return its addresses, in the resolver's order of preference.

    Raises :class:`WebhookAddressRefusedError` if ANY address is forbidden: a host that mixes public and internal
    addresses is an attack, not a partial success. ``allow_private`` lets private and loopback addresses through,
    never metadata, link-local or the Lambda runtime API. ``socket.gaierror`` passes through.
    """
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in resolver(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address in addresses:
            continue
        ip = ipaddress.ip_address(address)
        reason = is_forbidden(ip)
        if reason is not None and (not allow_private or reason in ALWAYS_REFUSED):
            raise WebhookAddressRefusedError(host, address, reason)
        if _is_runtime_api(ip, reason, port):
            raise WebhookAddressRefusedError(host, f"{address} port {port}", RUNTIME_API)
        addresses.append(address)
    if not addresses:
        raise WebhookAddressRefusedError(host, "no address", "unresolvable")
    return addresses


def _is_runtime_api(ip: IPAddress, reason: str | None, port: int) -> bool:
    """Whether ``ip``:``port`` reaches the Lambda runtime API, which hands out invocations and takes their answers."""
    # Lambda sets AWS_LAMBDA_RUNTIME_API; read at each check, as it belongs to the runtime, not to the settings.
    api_host, _, api_port = (os.environ.get("AWS_LAMBDA_RUNTIME_API") or _DEFAULT_RUNTIME_API).rpartition(":")
    if not api_port.isdigit() or int(api_port) != port:
        return False
    try:
        api_ip = ipaddress.ip_address(api_host.strip("[]"))
    except ValueError:
        return reason in _LOCAL_MACHINE  # a host name: assume the machine's own, as Lambda's is
    if is_forbidden(api_ip) in _LOCAL_MACHINE:
        # Whatever listens on the machine's loopback is reached through any loopback or unspecified address.
        return reason in _LOCAL_MACHINE
    return ip == api_ip
