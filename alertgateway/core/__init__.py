# -*- test-case-name: tests.unit.test_decide -*-
"""
The pure decision core: the alert model, its keys, episodes, escalation,
storms and the decider.  Imports nothing else of the gateway's.
"""
