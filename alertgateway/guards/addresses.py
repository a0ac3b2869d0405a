"""
Source address filtering (C{security.allowed_ips}).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["AddressFilter"]


class AddressFilter:
    """
    Allow the addresses inside any of C{networks}; with none, allow all.
    """

    def __init__(self, networks: Sequence[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def allows(self, host: str) -> bool:
        if not self._networks:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)
