# -*- test-case-name: tests.unit.test_config -*-
"""
The C{security} section: TLS on the webhook listener (mutual TLS included)
and which client addresses may post.
"""

from __future__ import annotations

import enum
import ipaddress

import attrs

from alertgateway.config._fields import addresses_or_hosts, positive
from alertgateway.config._schema import duration
from alertgateway.tls import DEFAULT_TLS12_CIPHERS, TLSFiles, cipher_problem

__all__ = ["ForwardedHeader", "SecurityConfig"]


def _networks(values: tuple[str, ...]) -> str | None:
    # Proxies are matched by address only: a host name would make trust
    # depend on DNS.
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not an IP address or CIDR network"
    return None


class ForwardedHeader(enum.StrEnum):
    """
    The header C{trusted_proxies} write the client address into.  Only that
    one is read: a proxy passes the other through as the client sent it.
    """

    X_FORWARDED_FOR = "x-forwarded-for"
    FORWARDED = "forwarded"


@attrs.frozen
class SecurityConfig:
    """
    TLS for the webhook listener and the addresses allowed to post.
    """

    tls_enabled: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    chain_file: str | None = None
    # Mutual TLS: clients may (or, with require_client_cert, must) present a
    # certificate signed by this CA, naming one of allowed_client_names.
    client_ca_file: str | None = None
    require_client_cert: bool = False
    allowed_client_names: tuple[str, ...] = ()
    # How often the certificate files are checked for a rotation.
    cert_reload_interval: float = duration(30.0, positive)
    # The TLS 1.2 ciphers (an OpenSSL cipher list): by default only those
    # with forward secrecy and authenticated encryption.
    tls_ciphers: str = attrs.field(default=DEFAULT_TLS12_CIPHERS, metadata={"check": cipher_problem})
    # Addresses, CIDR networks or host names that may post; empty allows all.
    allowed_ips: tuple[str, ...] = attrs.field(default=(), metadata={"check": addresses_or_hosts})
    # Proxies whose forwarded_header is believed.
    trusted_proxies: tuple[str, ...] = attrs.field(default=(), metadata={"check": _networks})
    forwarded_header: ForwardedHeader = ForwardedHeader.X_FORWARDED_FOR
    # How often host names in allowed_ips are resolved again.
    resolve_interval: float = duration(300.0, positive)

    def tls_files(self) -> TLSFiles | None:
        """
        The files the TLS listener loads, or C{None} when TLS is off or
        they are not named.
        """
        if not self.tls_enabled or not self.cert_file or not self.key_file:
            return None
        return TLSFiles(
            cert_file=self.cert_file,
            key_file=self.key_file,
            chain_file=self.chain_file,
            client_ca_file=self.client_ca_file,
            require_client_cert=self.require_client_cert,
            allowed_client_names=self.allowed_client_names,
            ciphers=self.tls_ciphers,
        )
