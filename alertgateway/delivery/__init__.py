# -*- test-case-name: tests.unit.test_forwarder -*-
"""
Delivery of accepted alerts: the queue, the forwarder and the sinks.
"""
