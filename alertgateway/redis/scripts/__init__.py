# -*- test-case-name: tests.unit.test_redis_scripts -*-
"""
The Lua scripts the gateway runs on Redis, one C{<name>.lua} file each
beside this module, and L{load}, which makes a L{Script} of one.

A script's file name is its name in the metrics (the C{operation} label of
C{gateway_redis_latency_seconds} and C{gateway_redis_errors_total}); the
comment at its top says what it takes (C{KEYS}, C{ARGV}) and returns.  Each
file is read once, the first time it is loaded; the scripts are installed
with the package (C{package_data} in C{setup.cfg}).

The shared-state scripts are named here.  Each runs whole or not at all,
with no other client's command in between; that is what makes a decision
taken by one replica see every decision taken before it by any other.
Entries (episodes, correlation groups) are hashes with a version C{v} and
the JSON document C{d}, and the members waiting in a group's storm a list
beside it: a decision loads what it needs (L{LOAD}), decides in Python,
and writes back only if no version moved meanwhile (L{COMMIT}, which
appends the decision's queue entries in the same call with the Redis
queue); otherwise it loads again and decides again.

Key names are built inside L{COMMIT} and L{EXPIRE} from the prefix, so these
scripts need one Redis, not a Redis Cluster.  The queue's scripts
(C{queue_*.lua}) are loaded by the modules of L{alertgateway.redis.queue}.
"""

from __future__ import annotations

import functools
from importlib import resources

from alertgateway.redis.client import Script

__all__ = ["BUCKETS", "COMMIT", "DELIVERED", "EXPIRE", "LOAD", "UNDO", "load"]


@functools.cache
def load(name: str) -> Script:
    """
    The script of the file C{<name>.lua} of this package, named C{name}.

    @raise FileNotFoundError: If there is no such script.
    """
    source = resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return Script(name, source)


# Loads the entries a decision needs.
LOAD = load("state_load")

# Writes back what a decision changed, if nothing it loaded moved meanwhile,
# and queues its envelopes with it.
COMMIT = load("state_commit")

# Takes back a decision whose forwards a queue outside Redis refused.
UNDO = load("state_undo")

# Records how a forward's delivery went, beside its episode.
DELIVERED = load("state_delivered")

# Forgets the episodes not seen within the window.
EXPIRE = load("state_expire")

# Shared token buckets: one decision per request.
BUCKETS = load("rate_buckets")
