# -*- test-case-name: tests.unit.test_state_memory -*-
"""
Where the gateway's decisions keep their state: in the process (memory) or
shared by every replica through Redis.
"""
