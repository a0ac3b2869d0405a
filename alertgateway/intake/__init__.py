# -*- test-case-name: tests.unit.test_intake -*-
"""
From accepted alerts to queued envelopes: L{admission} decides and commits
each webhook's alerts with their forwards, L{backlog} runs the periodic
storm flush (and holds room in the queue for what it could not queue),
L{outcomes} follows deliveries for the status API and for requests that
wait for them.
"""
