"""
Tests for L{alertgateway.guards.addresses}: allow lists of addresses,
networks and host names, and the client address behind trusted proxies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress, IHostnameResolver, IHostResolution, IResolutionReceiver
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from alertgateway.guards.addresses import UNKNOWN_CLIENT, AddressFilter, ClientAddress, ProxyHeader, parse_address


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        raise NotImplementedError("the gateway never cancels a resolution")


@implementer(IHostnameResolver)
class FakeResolver:
    """
    A name resolver answering from a table, as the reactor's would: each
    resolution begins, reports its addresses and completes, at once or
    when the test says (C{hold}).

    @ivar asked: The names asked for, in order.
    @ivar broken: Names for which resolveHostName raises.
    """

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []
        self.broken: set[str] = set()
        self.hold = False
        self.held: list[Callable[[], None]] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.asked.append(hostName)
        if hostName in self.broken:
            raise ValueError(f"cannot resolve {hostName}")
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)

        def complete() -> None:
            for text in self.table.get(hostName, []):
                if text.startswith("/"):
                    resolutionReceiver.addressResolved(UNIXAddress(text))
                    continue
                kind = IPv6Address if ":" in text else IPv4Address
                resolutionReceiver.addressResolved(kind("TCP", text, portNumber))
            resolutionReceiver.resolutionComplete()

        if self.hold:
            self.held.append(complete)
        else:
            complete()
        return resolution


def capture_warnings(case: SynchronousTestCase) -> list[LogEvent]:
    events: list[LogEvent] = []

    @implementer(ILogObserver)
    class Collector:
        def __call__(self, event: LogEvent) -> None:
            if event.get("log_level") in (LogLevel.warn, LogLevel.critical):
                events.append(event)

    observer = Collector()
    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


class ParseAddressTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """
        Addresses are read plain, with a port, in brackets, quoted (as in
        Forwarded), and IPv4-mapped IPv6 as the IPv4 address.
        """
        cases = {
            "192.0.2.1": "192.0.2.1",
            " 192.0.2.1:8080 ": "192.0.2.1",
            "2001:db8::1": "2001:db8::1",
            "[2001:db8::1]": "2001:db8::1",
            "[2001:db8::1]:443": "2001:db8::1",
            '"[2001:db8:cafe::17]:4711"': "2001:db8:cafe::17",
            "::ffff:192.0.2.1": "192.0.2.1",
            "[::ffff:10.0.0.1]:80": "10.0.0.1",
        }
        for text, expected in cases.items():
            with self.subTest(text=text):
                self.assertEqual(parse_address(text), ipaddress.ip_address(expected))
        self.assertIsInstance(parse_address("::ffff:192.0.2.1"), ipaddress.IPv4Address)

    def test_not_addresses(self) -> None:
        """
        Names, RFC 7239's C{unknown} and obfuscated identifiers, and broken
        text are not addresses.
        """
        for text in (
            "",
            "unknown",
            "_hidden",
            "gateway.example",
            "[",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "192.0.2.1:80:80",
            "192.0.2.1:http",
            "300.1.1.1",
        ):
            with self.subTest(text=text):
                self.assertIsNone(parse_address(text))


class AddressFilterTests(SynchronousTestCase):
    """
    L{AddressFilter.allows} for IPv4, IPv6 and IPv4-mapped IPv6 peers.
    """

    def test_no_networks_allow_all(self) -> None:
        """
        Without security.allowed_ips every peer is allowed, even one that
        is not an IP address (a UNIX socket).
        """
        allow_all = AddressFilter([])
        for host in ("10.0.0.1", "::1", "", UNKNOWN_CLIENT):
            self.assertTrue(allow_all.allows(host), host)

    def test_networks(self) -> None:
        """
        Peers inside any listed network or address are allowed, others not;
        a host address with bits past its prefix is read as its network.
        """
        addresses = AddressFilter(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "172.16.5.9/16"])
        allowed = ("10.255.0.1", "192.0.2.7", "2001:db8:1::1", "172.16.200.1")
        refused = ("11.0.0.1", "192.0.2.8", "2001:db9::1", "172.17.0.1", "::1")
        for host in allowed:
            self.assertTrue(addresses.allows(host), host)
        for host in refused:
            self.assertFalse(addresses.allows(host), host)

    def test_ipv4_mapped(self) -> None:
        """
        A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; they are
        matched against the IPv4 networks.
        """
        addresses = AddressFilter(["10.0.0.0/8"])
        self.assertTrue(addresses.allows("::ffff:10.1.2.3"))
        self.assertFalse(addresses.allows("::ffff:192.0.2.1"))

    def test_not_an_address(self) -> None:
        """
        When networks are configured, a peer without an IP address (or a
        client behind an unnamed hop) is refused rather than let through.
        """
        addresses = AddressFilter(["0.0.0.0/0"])
        self.assertFalse(addresses.allows(""))
        self.assertFalse(addresses.allows("/run/gateway.sock"))
        self.assertFalse(addresses.allows(UNKNOWN_CLIENT))
        self.assertTrue(addresses.allows("203.0.113.9"))


class HostnameTests(SynchronousTestCase):
    """
    Host names in an allow list, resolved through an L{IHostnameResolver}.
    """

    def test_names_kept_apart(self) -> None:
        """
        Entries that are not addresses or networks are host names, compared
        without case or a trailing dot.
        """
        addresses = AddressFilter(["10.0.0.0/8", "AM.Example.", "grafana.example"])
        self.assertEqual(addresses.hostnames, ["am.example", "grafana.example"])

    def test_unresolved_allows_nothing(self) -> None:
        """
        Until a name has resolved, it allows no address; the listed
        networks still do.
        """
        addresses = AddressFilter(["am.example", "10.0.0.0/8"])
        self.assertFalse(addresses.allows("192.0.2.10"))
        self.assertTrue(addresses.allows("10.0.0.1"))
        self.assertFalse(AddressFilter(["am.example"]).allows("192.0.2.10"))

    def test_resolved(self) -> None:
        """
        After a refresh, every address a name resolves to is allowed, IPv6
        and IPv4-mapped ones included; others are not.
        """
        resolver = FakeResolver(
            {"am.example": ["192.0.2.10", "2001:db8::10"], "grafana.example": ["::ffff:198.51.100.7"]}
        )
        addresses = AddressFilter(["AM.example", "grafana.example"])
        done = addresses.refresh(resolver)
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(resolver.asked, ["am.example", "grafana.example"])
        for host in ("192.0.2.10", "2001:db8::10", "198.51.100.7", "::ffff:192.0.2.10"):
            self.assertTrue(addresses.allows(host), host)
        for host in ("192.0.2.11", "2001:db8::11"):
            self.assertFalse(addresses.allows(host), host)

    def test_non_ip_results_ignored(self) -> None:
        """
        Results that are not IP addresses (a resolver may report other
        kinds) are skipped; the IP ones are kept.
        """
        resolver = FakeResolver({"am.example": ["/run/am.sock", "192.0.2.10"]})
        addresses = AddressFilter(["am.example"])
        self.successResultOf(addresses.refresh(resolver))
        self.assertTrue(addresses.allows("192.0.2.10"))
        self.assertFalse(addresses.allows("/run/am.sock"))

    def test_refreshed(self) -> None:
        """
        A later refresh replaces a name's addresses: the old one is no
        longer allowed, the new one is.
        """
        resolver = FakeResolver({"am.example": ["192.0.2.10"]})
        addresses = AddressFilter(["am.example"])
        addresses.refresh(resolver)
        resolver.table["am.example"] = ["192.0.2.11"]
        self.successResultOf(addresses.refresh(resolver))
        self.assertFalse(addresses.allows("192.0.2.10"))
        self.assertTrue(addresses.allows("192.0.2.11"))

    def test_nothing_keeps_previous(self) -> None:
        """
        A name that resolves to nothing (a DNS hiccup) keeps the addresses
        it had, with a warning naming it.
        """
        warnings = capture_warnings(self)
        resolver = FakeResolver({"am.example": ["192.0.2.10"]})
        addresses = AddressFilter(["am.example"])
        addresses.refresh(resolver)
        resolver.table["am.example"] = []
        self.successResultOf(addresses.refresh(resolver))
        self.assertTrue(addresses.allows("192.0.2.10"))
        self.assertEqual([e["name"] for e in warnings], ["am.example"])

    def test_waits_for_every_name(self) -> None:
        """
        The refresh's Deferred fires once every resolution has completed,
        and only then are the new addresses used.
        """
        resolver = FakeResolver({"a.example": ["192.0.2.1"], "b.example": ["192.0.2.2"]})
        resolver.hold = True
        addresses = AddressFilter(["a.example", "b.example"])
        done = addresses.refresh(resolver)
        self.assertNoResult(done)
        resolver.held[0]()
        self.assertNoResult(done)
        self.assertTrue(addresses.allows("192.0.2.1"))
        self.assertFalse(addresses.allows("192.0.2.2"))
        resolver.held[1]()
        self.successResultOf(done)
        self.assertTrue(addresses.allows("192.0.2.2"))

    def test_resolver_raises(self) -> None:
        """
        A name the resolver refuses outright is logged, and the other names
        are still refreshed.
        """
        warnings = capture_warnings(self)
        resolver = FakeResolver({"a.example": ["192.0.2.1"], "b.example": ["192.0.2.2"]})
        resolver.broken.add("a.example")
        addresses = AddressFilter(["a.example", "b.example"])
        self.successResultOf(addresses.refresh(resolver))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual([e["name"] for e in warnings], ["a.example"])
        self.assertFalse(addresses.allows("192.0.2.1"))
        self.assertTrue(addresses.allows("192.0.2.2"))

    def test_no_names(self) -> None:
        """
        A list of networks only asks the resolver nothing.
        """
        resolver = FakeResolver({})
        self.successResultOf(AddressFilter(["10.0.0.0/8"]).refresh(resolver))
        self.assertEqual(resolver.asked, [])

    def test_set_resolved(self) -> None:
        """
        Addresses can be set for a name directly (as the service may at
        start).
        """
        addresses = AddressFilter(["am.example"])
        addresses.set_resolved("am.example", [ipaddress.ip_address("192.0.2.9")])
        self.assertTrue(addresses.allows("192.0.2.9"))


class ClientAddressTests(SynchronousTestCase):
    """
    L{ClientAddress.of}: forwarding headers are believed only from trusted
    proxies, and then only up to the nearest untrusted hop.
    """

    def setUp(self) -> None:
        self.clients = ClientAddress(["10.0.0.0/8", "fd00::/8"])

    def test_no_trusted_proxies(self) -> None:
        """
        Without trusted proxies the peer is the client, whatever the headers
        say; an IPv4-mapped peer is given as IPv4.
        """
        clients = ClientAddress([])
        headers = {"x-forwarded-for": "203.0.113.5", "forwarded": "for=203.0.113.5"}
        self.assertEqual(clients.of("192.0.2.1", headers), "192.0.2.1")
        self.assertEqual(clients.of("::ffff:192.0.2.1", headers), "192.0.2.1")

    def test_untrusted_peer(self) -> None:
        """
        A peer that is not a trusted proxy cannot name another client.
        """
        self.assertEqual(self.clients.of("192.0.2.1", {"x-forwarded-for": "10.0.0.9"}), "192.0.2.1")

    def test_not_an_address(self) -> None:
        """
        A peer without an IP address (a UNIX socket) is given as it is.
        """
        self.assertEqual(self.clients.of("", {"x-forwarded-for": "203.0.113.5"}), "")

    def test_x_forwarded_for(self) -> None:
        """
        From a trusted proxy, X-Forwarded-For names the client: the
        rightmost entry that is not a trusted proxy, so entries the client
        forged on the left are ignored; an IPv4-mapped proxy counts.
        """
        cases = {
            "203.0.113.5": "203.0.113.5",
            "6.6.6.6, 203.0.113.5": "203.0.113.5",
            "6.6.6.6,203.0.113.5, 10.0.0.2 ,10.0.0.3": "203.0.113.5",
            "10.9.9.9, 203.0.113.5, 10.0.0.2": "203.0.113.5",
            "[2001:db8::5]:1234, fd00::2": "2001:db8::5",
        }
        for header, client in cases.items():
            with self.subTest(header=header):
                self.assertEqual(self.clients.of("10.0.0.1", {"x-forwarded-for": header}), client)
                self.assertEqual(self.clients.of("::ffff:10.0.0.1", {"x-forwarded-for": header}), client)

    def test_all_trusted(self) -> None:
        """
        When every hop is a trusted proxy, the client is the leftmost (an
        internal sender); without any header it is the proxy itself.
        """
        self.assertEqual(self.clients.of("10.0.0.1", {"x-forwarded-for": "10.0.0.7, 10.0.0.2"}), "10.0.0.7")
        self.assertEqual(self.clients.of("10.0.0.1", {}), "10.0.0.1")
        self.assertEqual(self.clients.of("10.0.0.1", {"x-forwarded-for": " , "}), "10.0.0.1")

    def test_forwarded(self) -> None:
        """
        With proxies that write RFC 7239 Forwarded, it is read with its
        parameters, quoted values and bracketed IPv6 addresses with ports,
        the same rightmost rule applying.
        """
        clients = ClientAddress(["10.0.0.0/8", "fd00::/8"], ProxyHeader.FORWARDED)
        cases = {
            "for=203.0.113.5": "203.0.113.5",
            'for="[2001:db8:cafe::17]:4711"': "2001:db8:cafe::17",
            "for=6.6.6.6, for=203.0.113.5;proto=https;by=10.0.0.1, for=10.0.0.2": "203.0.113.5",
            'For="203.0.113.5:80" ; host=gw.example': "203.0.113.5",
            'for=198.51.100.9;by="x, for=10.0.0.9"': "198.51.100.9",
            'for=203.0.113.7;by="10.0.0.1, for=198.51.100.9"': "203.0.113.7",
            'for="203.0.113.\\5"': "203.0.113.5",
            "garbage, for=203.0.113.5": "203.0.113.5",
        }
        for header, client in cases.items():
            with self.subTest(header=header):
                self.assertEqual(clients.of("10.0.0.1", {"forwarded": header}), client)

    def test_client_forwarded_ignored(self) -> None:
        """
        By default the proxies write X-Forwarded-For: a Forwarded header
        is what the client sent (proxies pass it through), so it is never
        read, whether X-Forwarded-For is there or not.
        """
        headers = {"forwarded": "for=10.20.0.9", "x-forwarded-for": "198.51.100.1"}
        self.assertEqual(self.clients.of("10.0.0.1", headers), "198.51.100.1")
        self.assertEqual(self.clients.of("10.0.0.1", {"forwarded": "for=203.0.113.5"}), "10.0.0.1")

    def test_never_combined(self) -> None:
        """
        With proxies that write Forwarded, X-Forwarded-For is the client's
        and is never read, not even when Forwarded has no C{for}.
        """
        clients = ClientAddress(["10.0.0.0/8"], ProxyHeader.FORWARDED)
        headers = {"forwarded": "for=203.0.113.5", "x-forwarded-for": "198.51.100.1"}
        self.assertEqual(clients.of("10.0.0.1", headers), "203.0.113.5")
        headers = {"forwarded": "proto=https;host=gw.example", "x-forwarded-for": "198.51.100.1"}
        self.assertEqual(clients.of("10.0.0.1", headers), "10.0.0.1")
        self.assertEqual(clients.of("10.0.0.1", {"x-forwarded-for": "198.51.100.1"}), "10.0.0.1")

    def test_unknown_hop(self) -> None:
        """
        When the nearest untrusted hop is not an address (C{unknown}, an
        obfuscated identifier, junk), the client is unknown: a forged
        address further left is not taken instead.
        """
        forwarded = ClientAddress(["10.0.0.0/8"], ProxyHeader.FORWARDED)
        cases = [
            (forwarded, {"forwarded": "for=203.0.113.5, for=unknown"}),
            (forwarded, {"forwarded": 'for=203.0.113.5, for="_hidden", for=10.0.0.2'}),
            (self.clients, {"x-forwarded-for": "203.0.113.5, not-an-address"}),
        ]
        for clients, headers in cases:
            with self.subTest(headers=headers):
                self.assertEqual(clients.of("10.0.0.1", headers), UNKNOWN_CLIENT)
