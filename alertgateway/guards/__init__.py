# -*- test-case-name: tests.unit.test_auth -*-
"""
Checks a request must pass before its body is read: where it comes from and
who sent it.
"""
