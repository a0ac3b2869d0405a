# -*- test-case-name: tests.unit.test_state_behaviour -*-
"""
Everything the gateway keeps in Redis: the client, the Lua scripts, shared
decisions, rate limits, replay memory and the Redis Streams queue.
"""
