"""
The reproducible benchmark of the gateway (issue 7): ``make bench``.

It starts, on one machine and in one run, the real plugin (``twistd -n
alertgateway``) with a production-like configuration, a stub Alert
Processor recording arrival times, load generators (``wrk`` with Lua
scripts, and a constant-rate sender written with Twisted) and, as the
ceiling, a bare ``twisted.web`` resource that parses the same JSON and
answers 202.  It prints one table; see ``bench/README.md``.
"""
