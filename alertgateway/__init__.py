# -*- test-case-name: tests.unit.test_tap -*-
"""
alertgateway: the webhook gateway between monitoring systems (Prometheus
Alertmanager, Grafana) and the Alert Processor.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
