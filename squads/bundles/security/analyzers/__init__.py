"""The security squad's analyzers, one module per kind of output: ``ssh`` (sshd's journal, the auth
log), ``exposure`` (listeners, setuid files, accounts, sshd -T), ``sweep`` (last, lastb, groups,
processes, their programs, cron.d). The rules themselves live beside them in ``hunt``, ``posture``,
``privilege`` and ``review``.

Every analyzer stays importable from here (``from squads.bundles.security.analyzers import sshd``)."""

from __future__ import annotations

from .exposure import accounts as accounts
from .exposure import listeners as listeners
from .exposure import setuid as setuid
from .exposure import sshd as sshd
from .ssh import ssh_log as ssh_log
from .sweep import cron_dir as cron_dir
from .sweep import group as group
from .sweep import last as last
from .sweep import lastb as lastb
from .sweep import process_program as process_program
from .sweep import processes as processes
