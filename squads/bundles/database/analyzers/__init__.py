"""The database squad's analyzers, one module per kind of output: ``sessions`` (connections, locks,
long queries, limits), ``server`` (replication, clusters, readiness, settings, counters), ``serverlog``
(the server log), ``filesystems`` (df, the kernel log); ``psql`` reads a query's rows for them.

Every analyzer stays importable from here (``from squads.bundles.database.analyzers import disk``)."""

from __future__ import annotations

from .filesystems import disk as disk
from .filesystems import kernel as kernel
from .server import archiver as archiver
from .server import clusters as clusters
from .server import counters as counters
from .server import dead_tuples as dead_tuples
from .server import hba_rules as hba_rules
from .server import ready as ready
from .server import replication as replication
from .server import replication_slots as replication_slots
from .server import settings as settings
from .server import sizes as sizes
from .server import status as status
from .server import xid_age as xid_age
from .serverlog import server_log as server_log
from .sessions import blocking as blocking
from .sessions import connection_limits as connection_limits
from .sessions import connections as connections
from .sessions import long_queries as long_queries
from .sessions import max_connections as max_connections
