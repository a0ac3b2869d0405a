# -*- test-case-name: tests.unit.test_sinks -*-
"""
The connection pool the HTTP sink sends through: twisted.web's own, with
its connections' factories kept out of the log.

twisted.web makes one client factory per connection and Twisted logs the
start and the stop of every factory at C{info}: two lines per connection to
the Alert Processor, which said nothing an operator could use and, with
short-lived connections, outnumbered every other line.
"""

from __future__ import annotations

from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory

__all__ = ["QuietConnectionPool"]


class _QuietClientFactory(_HTTP11ClientFactory):
    noisy = False


class QuietConnectionPool(HTTPConnectionPool):
    """
    An C{HTTPConnectionPool} whose connections do not log their factories.
    """

    _factory = _QuietClientFactory
