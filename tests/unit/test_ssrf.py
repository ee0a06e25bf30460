"""The SSRF policy: every internal range is refused, in every IPv4 and IPv6 spelling, and public ones pass."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.ssrf import WebhookAddressRefusedError, is_forbidden, resolve_public

FORBIDDEN = [
    # IPv4
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to check, not one to bind
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "cgnat"),
    ("100.127.255.254", "cgnat"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("169.254.1.1", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.1", "reserved"),
    ("192.0.0.170", "reserved"),
    ("192.0.2.10", "documentation"),
    ("192.88.99.1", "reserved"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    # IPv6
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fd00:ec2::254", "metadata"),
    ("fd00:ec2::23", "private"),
    ("fc00::1", "private"),
    ("fdff:ffff::1", "private"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "private"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("2001:10::1", "reserved"),
    ("100::1", "reserved"),
    ("5f00::1", "reserved"),
    ("::0.0.0.2", "reserved"),  # IPv4-compatible (deprecated)
    ("4000::1", "reserved"),  # outside global unicast
    ("64:ff9b:1::a00:1", "private"),  # local-use NAT64
    # IPv4 inside IPv6: the embedded address decides
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:10.1.2.3", "private"),
    ("64:ff9b::10.0.0.1", "private"),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("2002:c0a8:0101::1", "private"),  # 6to4 of 192.168.1.1
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe:1::1", "metadata"),  # 6to4 of 169.254.169.254
    # Teredo: server 65.54.227.120, client 127.0.0.1 (stored inverted: 80ff:fffe)
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
    # Teredo: server 10.0.0.1, client public
    ("2001:0:a00:1::f7f7:f7f7", "private"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "52.94.236.248",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "198.17.255.255",
    "223.255.255.255",
    "2606:4700::1111",
    "2600:1f18::1",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:0808:0808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: server 65.54.227.120, client 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN)
def test_forbidden_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    """Given an internal address in any spelling, when it is checked, then it is refused and the reason named."""
    assert is_forbidden(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    """Given a public address (also one embedded in IPv6), when it is checked, then it passes."""
    assert is_forbidden(ipaddress.ip_address(address)) is None


@given(st.ip_addresses(v=4))
def test_every_ipv4_address_python_calls_non_global_is_refused(ip: ipaddress.IPv4Address) -> None:
    """Given any IPv4 address the standard library does not call global, then the policy refuses it too."""
    if not ip.is_global:
        assert is_forbidden(ip) is not None


@given(st.ip_addresses(v=4))
def test_ipv6_spellings_of_an_ipv4_address_share_its_verdict(ip: ipaddress.IPv4Address) -> None:
    """Given any IPv4 address, its IPv4-mapped, NAT64 and 6to4 spellings get the same verdict."""
    verdict = is_forbidden(ip)
    packed = int(ip)
    assert is_forbidden(ipaddress.IPv6Address(f"::ffff:{ip}")) == verdict
    assert is_forbidden(ipaddress.IPv6Address(f"64:ff9b::{ip}")) == verdict
    assert is_forbidden(ipaddress.IPv6Address((0x2002 << 112) | (packed << 80) | 1)) == verdict


def fake_resolver(answers: dict[str, list[str]]):
    """A getaddrinfo stand-in: each host resolves to the given addresses, unknown hosts fail like DNS does."""

    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        results: list[tuple[object, ...]] = []
        for address in answers[host]:
            if ":" in address:
                results.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                results.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return results

    return resolve


def test_a_public_host_resolves_to_all_its_addresses_once_each() -> None:
    """Given a host with two public addresses listed twice, then both come back, in order, without repeats."""
    resolver = fake_resolver({"hooks.example.com": ["93.184.216.34", "2606:4700::1111", "93.184.216.34"]})

    addresses = resolve_public("hooks.example.com", 443, allow_private=False, resolver=resolver)

    assert addresses == ["93.184.216.34", "2606:4700::1111"]


@pytest.mark.parametrize(
    ("answers", "address", "reason"),
    [
        (["93.184.216.34", "10.0.0.5"], "10.0.0.5", "private"),
        (["169.254.169.254", "93.184.216.34"], "169.254.169.254", "metadata"),
        (["2606:4700::1111", "::ffff:127.0.0.1"], "::ffff:127.0.0.1", "loopback"),
    ],
)
def test_a_host_with_any_internal_address_is_refused(answers: list[str], address: str, reason: str) -> None:
    """Given a host resolving to public AND internal addresses (a rebinding set-up), then it is refused whole."""
    resolver = fake_resolver({"evil.example.com": answers})

    with pytest.raises(WebhookAddressRefusedError) as refused:
        resolve_public("evil.example.com", 443, allow_private=False, resolver=resolver)

    assert (refused.value.host, refused.value.address, refused.value.reason) == ("evil.example.com", address, reason)
    assert str(refused.value) == f"evil.example.com resolves to {address} ({reason}); refused"


def test_allow_private_lets_internal_addresses_through() -> None:
    """Given a destination that allows private networks, then loopback and private addresses are returned."""
    resolver = fake_resolver({"receiver.internal": ["127.0.0.1", "10.0.0.5"]})

    addresses = resolve_public("receiver.internal", 8080, allow_private=True, resolver=resolver)

    assert addresses == ["127.0.0.1", "10.0.0.5"]


def test_a_host_with_no_address_is_refused() -> None:
    """Given a resolver that answers nothing, then the host is refused rather than returning an empty list."""
    with pytest.raises(WebhookAddressRefusedError, match="unresolvable"):
        resolve_public("empty.example.com", 443, allow_private=False, resolver=fake_resolver({"empty.example.com": []}))


def test_dns_failures_pass_through() -> None:
    """Given a name that does not resolve, then the resolver's own error reaches the caller (it is retryable)."""
    with pytest.raises(socket.gaierror):
        resolve_public("missing.example.com", 443, allow_private=False, resolver=fake_resolver({}))


def test_the_real_resolver_refuses_localhost() -> None:
    """Given the system resolver, when "localhost" is resolved, then it is refused as loopback."""
    with pytest.raises(WebhookAddressRefusedError) as refused:
        resolve_public("localhost", 443, allow_private=False)

    assert refused.value.reason == "loopback"


# --- allow_private (a development switch) never opens what holds credentials or drives invocations ---------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("2002:a9fe:a9fe:1::1", "metadata"),
        ("169.254.169.253", "link-local"),  # the VPC's DNS resolver
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.0.1", "link-local"),
    ],
)
def test_issue7_item17_allow_private_never_opens_metadata_or_link_local(address: str, reason: str) -> None:
    """Given a destination that allows private networks, when its host resolves to a metadata service or any
    link-local address (in any spelling), then it is refused all the same."""
    resolver = fake_resolver({"receiver.internal": ["10.0.0.5", address]})

    with pytest.raises(WebhookAddressRefusedError) as refused:
        resolve_public("receiver.internal", 80, allow_private=True, resolver=resolver)

    assert (refused.value.address, refused.value.reason) == (address, reason)


@given(st.ip_addresses(network="169.254.0.0/16") | st.ip_addresses(network="fe80::/10"))
def test_allow_private_refuses_every_link_local_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Given any link-local address, then allowing private networks does not let it through."""
    with pytest.raises(WebhookAddressRefusedError):
        resolve_public("h.internal", 443, allow_private=True, resolver=fake_resolver({"h.internal": [str(ip)]}))


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "0.0.0.0"])  # noqa: S104
@pytest.mark.parametrize("runtime_api", ["127.0.0.1:9001", None])
def test_issue7_item17_allow_private_never_opens_the_lambda_runtime_api(
    monkeypatch: pytest.MonkeyPatch, address: str, runtime_api: str | None
) -> None:
    """Given a destination that allows private networks, when its host reaches this machine on the Lambda runtime
    API's port (AWS_LAMBDA_RUNTIME_API, 127.0.0.1:9001 when unset), then it is refused."""
    if runtime_api is None:
        monkeypatch.delenv("AWS_LAMBDA_RUNTIME_API", raising=False)
    else:
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", runtime_api)
    resolver = fake_resolver({"receiver.internal": [address]})

    with pytest.raises(WebhookAddressRefusedError) as refused:
        resolve_public("receiver.internal", 9001, allow_private=True, resolver=resolver)

    assert refused.value.reason == "lambda-runtime-api"
    assert resolve_public("receiver.internal", 9002, allow_private=True, resolver=resolver) == [address]


def test_the_runtime_api_is_wherever_lambda_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given AWS_LAMBDA_RUNTIME_API on another port, then that port is refused and 9001 is an ordinary port."""
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9555")
    resolver = fake_resolver({"localhost": ["127.0.0.1"]})

    with pytest.raises(WebhookAddressRefusedError, match="lambda-runtime-api"):
        resolve_public("localhost", 9555, allow_private=True, resolver=resolver)
    assert resolve_public("localhost", 9001, allow_private=True, resolver=resolver) == ["127.0.0.1"]
