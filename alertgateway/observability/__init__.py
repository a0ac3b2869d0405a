# -*- test-case-name: tests.unit.test_metrics -*-
"""
Metrics and logs.
"""
