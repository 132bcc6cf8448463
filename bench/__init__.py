"""Benchmarks: payload builder, load generator, baseline and end-to-end runner.

They start and stop embedded PostgreSQL, which forks to run its tools as their own system user
when run as root, beside gRPC clients: gRPC's fork handlers are turned off before gRPC is
imported, as in ``python/tidegate/cli.py`` (every such fork execs)."""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
