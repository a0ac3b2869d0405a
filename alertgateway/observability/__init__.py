"""
Metrics and logs.
"""
