# -*- test-case-name: tests.unit.test_service -*-
"""
The application: the twistd plugin's options, the object graph built from
the configuration, and the service tree that owns its lifecycle.
"""
