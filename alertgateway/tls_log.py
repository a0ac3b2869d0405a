# -*- test-case-name: tests.unit.test_tls -*-
"""
The security log of refused TLS handshakes.

OpenSSL refuses a client during the handshake, before any HTTP request
exists to be logged: without a client certificate the gateway requires,
with one of an unknown CA or naming nobody allowed, or for any other fatal
alert the server sends (an old protocol version, no cipher in common).
L{HandshakeRefusals} watches a context's handshakes and writes each refusal
once, as a warning of the C{alertgateway.security} namespace with the
client's address, through a L{RefusalLog} that writes at most a burst per
interval (a client retrying in a loop, or a scanner, must not fill the
log); every refusal is counted all the same.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["HandshakeRefusals", "RefusalLog", "client_address"]

_log = Logger()
_security_log = Logger(namespace="alertgateway.security")

# SSL3_AL_FATAL: the level byte of a fatal alert.
_FATAL = 2
# The alerts a refusing server sends most (RFC 8446 6, RFC 5246 7.2).
_ALERTS = {
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}
_HANDSHAKE_FAILURE = 40
_CERTIFICATE_REQUIRED = 116
# Where a TLS 1.2 server has asked for the client's certificate: a
# handshake_failure after it, without a certificate, is its absence.
_ASKED = b"SSLv3/TLS write certificate request"


def client_address(connection: SSL.Connection) -> str:
    """
    The peer's address, from the Twisted protocol that Twisted's TLS layer
    stores as the connection's app data.
    """
    protocol = connection.get_app_data()
    transport = getattr(protocol, "transport", None)
    peer = transport.getPeer() if transport is not None else None
    return str(getattr(peer, "host", "-"))


class RefusalLog:
    """
    Warnings of the security namespace, at most C{burst} every C{interval}
    seconds of C{clock}; the next one written says how many were left out
    (C{suppressed}).  Without a clock, every one is written.
    """

    def __init__(self, clock: IReactorTime | None, *, burst: int, interval: float) -> None:
        self._clock = clock
        self._burst = burst
        self._interval = interval
        self._window = float("-inf")
        self._written = 0
        self.suppressed = 0

    def warn(self, format: str, **fields: Any) -> None:
        if self._clock is not None:
            now = self._clock.seconds()
            if now - self._window >= self._interval:
                self._window, self._written = now, 0
            if self._written >= self._burst:
                self.suppressed += 1
                return
            self._written += 1
        suppressed, self.suppressed = self.suppressed, 0
        _security_log.warn(format, suppressed=suppressed, **fields)


class HandshakeRefusals:
    """
    Record each refused handshake of a context once: the certificate
    checks say why they refused (L{certificate_refused}); the context's
    info callback (L{info}) catches the refusals OpenSSL makes alone.

    @param on_refused: Called with the reason of every refusal, logged or
        not (the metrics).
    @param requires_certificate: Whether clients must present a
        certificate.
    """

    def __init__(
        self, log: RefusalLog, on_refused: Callable[[str], None] | None, *, requires_certificate: bool
    ) -> None:
        self._log = log
        self._on_refused = on_refused
        self._requires_certificate = requires_certificate
        # Connections asked for a certificate, and those already recorded;
        # weak, so a connection's end needs no clean-up here.
        self._asked: weakref.WeakSet[SSL.Connection] = weakref.WeakSet()
        self._recorded: weakref.WeakSet[SSL.Connection] = weakref.WeakSet()

    def certificate_refused(self, connection: SSL.Connection, reason: str, subject: str, error: str) -> None:
        """
        A client certificate was refused (C{client_certificate} or
        C{client_name}); the alert that follows is not recorded again.
        """
        self._record(
            connection,
            reason,
            "Refused a TLS client certificate from {client} ({subject}): {error}",
            subject=subject,
            error=error,
        )

    def info(self, connection: SSL.Connection, where: int, ret: int) -> None:
        """
        The context's info callback: note when a certificate is asked
        for, and record a fatal alert the server sends.
        """
        try:
            if where & SSL.SSL_CB_ACCEPT_LOOP:
                if self._requires_certificate and connection.get_state_string() == _ASKED:
                    self._asked.add(connection)
                return
            if not where & SSL.SSL_CB_WRITE_ALERT or ret >> 8 != _FATAL or connection in self._recorded:
                return
            alert = ret & 0xFF
            no_certificate = alert == _CERTIFICATE_REQUIRED or (
                alert == _HANDSHAKE_FAILURE and connection in self._asked and connection.get_peer_certificate() is None
            )
            if no_certificate:
                self._record(
                    connection,
                    "client_certificate",
                    "Refused a TLS client from {client}: {error}",
                    subject="-",
                    error="it presented no certificate, and one is required",
                )
            else:
                name = _ALERTS.get(alert, f"alert {alert}")
                self._record(connection, "handshake", "Refused a TLS handshake from {client}: {error}", error=name)
        except Exception:
            # Raised out of an OpenSSL callback it would be lost in the
            # middle of a handshake.
            _log.failure("Recording a refused TLS handshake failed")

    def _record(self, connection: SSL.Connection, reason: str, format: str, **fields: str) -> None:
        self._recorded.add(connection)
        if self._on_refused is not None:
            self._on_refused(reason)
        self._log.warn(format, client=client_address(connection), reason=reason, **fields)
