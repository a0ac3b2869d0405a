# -*- test-case-name: tests.unit.test_web_webhook -*-
"""
The HTTP surface: the Site, the resource tree and its handlers.
"""
