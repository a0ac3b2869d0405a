"""
Source address filtering.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from alertgateway.guards.addresses import AddressFilter


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
        for host in ("10.0.0.1", "::1", ""):
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
        When networks are configured, a peer without an IP address is
        refused rather than let through.
        """
        addresses = AddressFilter(["0.0.0.0/0"])
        self.assertFalse(addresses.allows(""))
        self.assertFalse(addresses.allows("/run/gateway.sock"))
        self.assertTrue(addresses.allows("203.0.113.9"))
