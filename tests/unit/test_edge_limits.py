"""
The edge's limits from the configuration: the C{service} keys for slow
senders, connections and body memory, their defaults and checks, and the
settings the sites are built with.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from alertgateway.app import settings
from alertgateway.config import ConfigError, parse_config
from alertgateway.web.connections import EdgeLimits
from tests.unit._http import make_config, make_service


class ServiceKeyTests(SynchronousTestCase):
    """
    service.header_timeout, body_timeout, min_body_rate, max_connections
    and max_buffered_bytes.
    """

    def test_defaults(self) -> None:
        """
        10 s for headers, 30 s for a body plus a second per 16 KiB, 32 MiB
        of bodies, and max_connections left to the open-file limit.
        """
        service = make_config().service
        self.assertEqual(
            (
                service.header_timeout,
                service.body_timeout,
                service.min_body_rate,
                service.max_buffered_bytes,
                service.max_connections,
            ),
            (10.0, 30.0, 16384, 32 * 1024 * 1024, None),
        )

    def test_read(self) -> None:
        """
        Durations are read as durations, the rest as numbers.
        """
        service = make_config(
            "service:\n  header_timeout: 2500ms\n  body_timeout: 1m\n  min_body_rate: 0\n"
            "  max_connections: 500\n  max_buffered_bytes: 2097152\n"
        ).service
        self.assertEqual(
            (
                service.header_timeout,
                service.body_timeout,
                service.min_body_rate,
                service.max_connections,
                service.max_buffered_bytes,
            ),
            (2.5, 60.0, 0, 500, 2097152),
        )

    def test_refused(self) -> None:
        """
        Zero or negative timeouts and caps, a negative rate, and less body
        memory than one body may take are problems naming their key.
        """
        text = (
            "service:\n  header_timeout: 0\n  body_timeout: 0\n  min_body_rate: -1\n  max_connections: 0\n"
            "alert_processor:\n  endpoint: file:x.jsonl\n"
        )
        with self.assertRaises(ConfigError) as raised:
            parse_config(text, environ={})
        message = str(raised.exception)
        for key in ("header_timeout", "body_timeout", "min_body_rate", "max_connections"):
            self.assertIn(f"service.{key}:", message)
        with self.assertRaises(ConfigError) as raised:
            parse_config(
                "service:\n  max_body_bytes: 2000\n  max_buffered_bytes: 1000\n"
                "alert_processor:\n  endpoint: file:x.jsonl\n",
                environ={},
            )
        self.assertIn("service.max_buffered_bytes: must be at least service.max_body_bytes", str(raised.exception))


class EdgeSettingsTests(SynchronousTestCase):
    """
    The limits each site is built with.
    """

    def test_default_max_connections(self) -> None:
        """
        An eighth of the open-file limit (at least 256) is kept for the
        rest of the process, and the default never passes 4096; an
        unlimited open-file limit is read as a large one.
        """
        self.assertEqual(settings.default_max_connections(1024), 768)
        self.assertEqual(settings.default_max_connections(4096), 3584)
        self.assertEqual(settings.default_max_connections(20_000), 4096)
        self.assertEqual(settings.default_max_connections(300), 44)
        self.assertEqual(settings.default_max_connections(100), 16)
        self.assertEqual(settings.default_max_connections(-1), 4096)

    def test_webhook_and_side_listeners(self) -> None:
        """
        The webhook site takes every key; the probe and metrics sites the
        deadlines, and a cap of their own, with no limit on requests or
        bodies.
        """
        config = make_config(
            "service:\n  header_timeout: 3s\n  max_connections: 50\n  max_concurrent_requests: 20\n"
            "  max_buffered_bytes: 2000000\n"
        )
        self.assertEqual(
            settings.edge_limits(config, webhook=True),
            EdgeLimits(
                header_timeout=3.0,
                body_timeout=30.0,
                min_body_rate=16384,
                max_connections=50,
                max_concurrent_requests=20,
                max_buffered_bytes=2000000,
            ),
        )
        self.assertEqual(
            settings.edge_limits(config, webhook=False),
            EdgeLimits(header_timeout=3.0, max_connections=settings.SIDE_CONNECTIONS),
        )
        default = settings.edge_limits(make_config(), webhook=True).max_connections
        self.assertIsNotNone(default)
        assert default is not None
        self.assertLessEqual(default, settings.MOST_CONNECTIONS)

    def test_service_sites(self) -> None:
        """
        The gateway's three sites are built with them, and the webhook
        listener's open connections are a gauge.
        """
        service, _, _ = make_service(make_config("service:\n  max_connections: 50\n"))
        self.assertEqual(service.site.limits.max_connections, 50)
        self.assertEqual(service.probe_site.limits.max_connections, settings.SIDE_CONNECTIONS)
        self.assertEqual(service.metrics.registry.get_sample_value("gateway_connections_open"), 0.0)
