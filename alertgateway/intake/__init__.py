"""
From accepted alerts to queued envelopes: decide, then commit.
"""
