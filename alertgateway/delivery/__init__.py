"""
Delivery of accepted alerts: the queue, the forwarder and the sinks.
"""
