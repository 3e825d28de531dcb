"""Which IP addresses a server-side fetch may connect to: public unicast ones only.

The re-check fetcher (mimamori/media/fetcher.py) asks this module about every address a
name resolves to, and about every redirect's, before it connects. An address is refused
when it, or an IPv4 address embedded in it (IPv4-mapped, IPv4-compatible, 6to4, Teredo,
NAT64), is loopback, private, link-local, multicast, reserved, shared (CGNAT), unspecified,
documentation, or a cloud metadata endpoint. Python's ``is_global`` alone is not enough: in
3.11 it calls multicast and some IPv4-mapped forms global.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metadata services of cloud providers: refused even when an allow-list would admit them.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
    "169.254.170.2",    # AWS ECS task metadata
    "fd00:ec2::254",    # AWS IMDS over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",      # Oracle Cloud
))

# Ranges refused outright (besides what the ipaddress flags say).
REFUSED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "64:ff9b:1::/48",   # NAT64 local use: translated to whatever the local network says
    "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class AddressPolicy:
    """Public unicast addresses pass; ``allow`` (tests' local servers only) admits more."""

    allow: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, networks: Iterable[str]) -> AddressPolicy:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why ``address`` may not be connected to, or None when it may."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%")[0])
        embedded = embedded_ipv4(ip)
        if ip in METADATA_ADDRESSES or any(e in METADATA_ADDRESSES for e in embedded):
            return f"{ip} is a cloud metadata address"
        if any(ip in network for network in self.allow):
            return None
        for candidate in (ip, *embedded):
            reason = _not_public(candidate)
            if reason:
                return f"{ip} is {reason}" if candidate == ip else f"{ip} embeds {candidate}, {reason}"
        return None


def embedded_ipv4(ip: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """IPv4 addresses an IPv6 address carries and would reach (mapped, compatible, 6to4, Teredo, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ()
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    packed = int(ip)
    if packed >> 32 == 0 and packed > 1:  # IPv4-compatible ::a.b.c.d (deprecated; not :: or ::1)
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in NAT64_WELL_KNOWN:
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    return tuple(found)


def _not_public(ip: IPAddress) -> str | None:
    flags = (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
             ("multicast", ip.is_multicast), ("private", ip.is_private), ("reserved", ip.is_reserved))
    for name, flagged in flags:
        if flagged:
            return name
    if any(ip in network for network in REFUSED_NETWORKS if network.version == ip.version):
        return "in a non-public range"
    if not ip.is_global:
        return "not globally routable"
    return None
