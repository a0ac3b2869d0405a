"""
What happens to an accepted alert: deduplication, escalation, correlation
and storm folding.  Deciders never parse and never deliver; they turn alerts
into verdicts and outgoing events on an injected clock.
"""
