"""
The HTTP surface: the Site, the resource tree and its handlers.
"""
