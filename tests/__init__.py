"""The test suite.

The tests fork while gRPC threads run (``subprocess`` with ``user=``, to run PostgreSQL's
tools as PostgreSQL's own system user, cannot use vfork). gRPC's fork handlers restart its
threads in the child before the child's exec, and now and then that child died of SIGSEGV
instead of running ``pg_ctl``. Every fork here is followed by exec, so the handlers are off.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
