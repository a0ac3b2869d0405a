"""
The reproducible benchmark of the gateway: ``make bench``.

It starts, on one machine and in one run, the real plugin (``twistd -n
alertgateway``) with a production-like configuration, a stub Alert
Processor recording arrival times, load generators (``wrk`` with Lua
scripts, and a constant-rate sender written with Twisted) and, as the
ceiling, a bare ``twisted.web`` resource that parses the same JSON and
answers 202.  It prints one table, the targets and a summary line, and
keeps the history of the summaries in ``bench/RESULTS.md``; see
``bench/README.md``.
"""
