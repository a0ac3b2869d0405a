# -*- test-case-name: tests.unit.test_addresses -*-
"""
Where a request comes from, and whether that may post.

L{AddressFilter} holds C{allowed_ips} entries: addresses, CIDR networks
(IPv4 and IPv6) and host names.  Host names are resolved through the
reactor's resolver at start and again periodically (L{AddressFilter.refresh}
run by a LoopingCall); until a name first resolves it allows nothing.

L{ClientAddress} finds the client behind trusted proxies: only when the
connection's peer is a trusted proxy is the one header those proxies write
believed (L{ProxyHeader}: C{X-Forwarded-For}, or RFC 7239 C{Forwarded}),
and the client is the rightmost address in its chain that is not itself a
trusted proxy (the leftmost ones can be forged by the client).  The other
header is never read: proxies pass through whatever a client sent in the
header they do not write themselves.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IHostnameResolver, IResolutionReceiver
from twisted.logger import Logger
from zope.interface import implementer

__all__ = ["UNKNOWN_CLIENT", "AddressFilter", "ClientAddress", "ProxyHeader", "parse_address"]

_log = Logger()

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# An IPv6 address in brackets, perhaps with a port (RFC 3986, RFC 7239).
_BRACKETED = re.compile(r"\[([^\]]*)\](?::[0-9]+)?")


# Every request parses its peer (and its proxies' headers): the same few
# strings again and again.  Bounded, and results are immutable.
@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """
    Read an address as it appears in headers and peers: plain, in brackets,
    with a port, or IPv4-mapped IPv6 (taken as the IPv4 address).
    """
    text = text.strip().strip('"')
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed is not None:
        text = bracketed.group(1)
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _text(address: IPAddress) -> str:
    return str(address)


def _networks(entries: Iterable[str]) -> tuple[list[IPNetwork], list[str]]:
    networks: list[IPNetwork] = []
    names: list[str] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.append(entry.rstrip(".").lower())
    return networks, names


@implementer(IResolutionReceiver)
class _Collector:
    def __init__(self) -> None:
        self.addresses: set[IPAddress] = set()
        self.done: Deferred[set[IPAddress]] = Deferred()

    def resolutionBegan(self, resolutionInProgress: object) -> None:
        pass

    def addressResolved(self, address: object) -> None:
        parsed = parse_address(str(getattr(address, "host", "")))
        if parsed is not None:
            self.addresses.add(parsed)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


class AddressFilter:
    """
    Allow the addresses inside any entry; with no entries, allow all.
    """

    def __init__(self, entries: Sequence[str]) -> None:
        self._empty = not entries
        self._networks, self.hostnames = _networks(entries)
        self._resolved: dict[str, frozenset[IPAddress]] = {}

    def allows(self, host: str) -> bool:
        if self._empty:
            return True
        address = parse_address(host)
        if address is None:
            return False
        if any(address in network for network in self._networks):
            return True
        return any(address in addresses for addresses in self._resolved.values())

    def set_resolved(self, hostname: str, addresses: Iterable[IPAddress]) -> None:
        self._resolved[hostname] = frozenset(addresses)

    def refresh(self, resolver: IHostnameResolver) -> Deferred[None]:
        """
        Resolve every host name again.  A name that resolves to nothing
        keeps its previous addresses: a DNS hiccup must not lock out a
        sender.
        """

        def _one(name: str) -> Deferred[None]:
            collector = _Collector()
            try:
                resolver.resolveHostName(collector, name, 0)
            except Exception:
                # One name the resolver cannot take must not stop the
                # others being refreshed.
                _log.failure("Cannot resolve {name} in allowed_ips", name=name)
                return succeed(None)

            def _store(addresses: set[IPAddress]) -> None:
                if addresses:
                    self.set_resolved(name, addresses)
                else:
                    _log.warn("Host name {name} in allowed_ips resolved to no address", name=name)

            return collector.done.addCallback(_store)

        return DeferredList([_one(name) for name in self.hostnames], consumeErrors=True).addCallback(lambda _: None)


# One parameter of a Forwarded element: a token, "=", then a token or a
# quoted string (which may hold , ; = and escaped quotes).
_PAIR = re.compile(r'\s*([^=,;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,;]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")


def _forwarded_for(value: str) -> list[str]:
    """
    The C{for} values of a C{Forwarded} header (RFC 7239), in order.
    """
    found: list[str] = []
    position = 0
    while position < len(value):
        if value[position] in ",; \t":
            position += 1
            continue
        match = _PAIR.match(value, position)
        if match is None:
            # Not a parameter: skip to the next separator.
            stops = [i for i in (value.find(",", position), value.find(";", position)) if i >= 0]
            position = min(stops) if stops else len(value)
            continue
        name, item = match.groups()
        if name.lower() == "for":
            item = item.strip()
            if item.startswith('"') and item.endswith('"') and len(item) >= 2:
                item = _QUOTED_PAIR.sub(r"\1", item[1:-1])
            found.append(item)
        position = match.end()
    return found


# The client behind a hop that a proxy could not or would not name
# (RFC 7239 "unknown" and obfuscated identifiers): refused by any allow
# list, and rate-limited together.
UNKNOWN_CLIENT = "unknown"


class ProxyHeader(enum.StrEnum):
    """
    The header the trusted proxies write the client's address into.

    nginx (C{proxy_add_x_forwarded_for}), ingress-nginx, HAProxy (C{option
    forwardfor}) and the cloud load balancers append to C{X-Forwarded-For}
    and pass a client's own C{Forwarded} through untouched; only a proxy
    configured to write C{Forwarded} (RFC 7239) makes that one genuine.
    """

    X_FORWARDED_FOR = "x-forwarded-for"
    FORWARDED = "forwarded"


class ClientAddress:
    """
    Find the client address of a request, believing the forwarding header
    C{header} only from C{trusted_proxies}.
    """

    def __init__(self, trusted_proxies: Sequence[str], header: ProxyHeader = ProxyHeader.X_FORWARDED_FOR) -> None:
        self._trusted, _ = _networks(trusted_proxies)
        self._header = header

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)

    def _chain(self, headers: Mapping[str, str]) -> list[str]:
        """
        The hops the proxies' header names, the nearest last.
        """
        value = headers.get(self._header.value, "")
        if self._header is ProxyHeader.FORWARDED:
            return _forwarded_for(value)
        return [item for item in value.split(",") if item.strip()]

    def of(self, peer: str, headers: Mapping[str, str]) -> str:
        """
        @param peer: The connection's peer address.
        @param headers: Request headers, names lower-cased.
        @return: The client's address, or L{UNKNOWN_CLIENT} when the
            nearest untrusted hop is not an address.
        """
        peer_address = parse_address(peer)
        if peer_address is None or not self._trusted or not self._is_trusted(peer_address):
            return _text(peer_address) if peer_address is not None else peer
        leftmost = peer_address
        # From the nearest hop outwards: each proxy appends the address it
        # saw, so only entries up to the first untrusted one are genuine.
        for item in reversed(self._chain(headers)):
            address = parse_address(item)
            if address is None:
                return UNKNOWN_CLIENT
            if not self._is_trusted(address):
                return _text(address)
            leftmost = address
        return _text(leftmost)
