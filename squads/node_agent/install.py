"""``squads agent install``: the systemd unit that runs the agent, and the one-line install command.

The unit runs the agent as an unprivileged user (a systemd ``DynamicUser``
unless a user is named), hands it the token through ``LoadCredential`` so the
token file stays root-only, locks the file system read-only, and tells systemd
not to restart after exit code 78 (wrong token, revoked node): retrying cannot
fix those.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

from squads.node_agent.service import AgentConfigError, agent_url, check_node_name

UNIT_NAME = "squads-agent.service"
TOKEN_PATH = Path("/etc/squads/node-token")
UNIT_DIR = Path("/etc/systemd/system")
# systemd treats spaces, quotes, '%' and '$' specially on ExecStart; refuse them rather than escape them.
_PLAIN = re.compile(r"[A-Za-z0-9._~:/@+,=\[\]-]+")


def _plain(what: str, value: str) -> str:
    if not _PLAIN.fullmatch(value):
        raise AgentConfigError(f"{what} {value!r}: only letters, digits and . _ ~ : / @ + , = - [ ] are allowed here")
    return value


def squads_executable() -> str:
    """The absolute path of this installation's ``squads`` command."""
    beside = Path(sys.executable).with_name("squads")
    found = str(beside) if beside.exists() else shutil.which("squads")
    if not found:
        raise AgentConfigError("cannot find the squads command; install Squads on this node first")
    return str(Path(found).absolute())


def unit_text(
    *, server: str, node_id: str, node_name: str, token_path: Path = TOKEN_PATH, executable: str,
    user: str | None = None, policy: Path | None = None, ca_file: Path | None = None,
) -> str:
    """The unit file's text. Every value is checked, never quoted: nothing reaches a shell."""
    agent_url(server)  # refuses plain http off loopback, as the agent would
    args = [_plain("executable", executable), "agent", "--server", _plain("--server", server),
            "--node-id", _plain("--node-id", node_id), "--node-name", check_node_name(node_name),
            "--token-file", "%d/node-token"]
    if policy is not None:
        args += ["--policy", _plain("--policy", str(policy.absolute()))]
    if ca_file is not None:
        args += ["--ca-file", _plain("--ca-file", str(ca_file.absolute()))]
    who = f"User={_plain('--user', user)}" if user else "DynamicUser=yes"
    return f"""\
[Unit]
Description=Squads node agent (connects out to {server})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={' '.join(args)}
LoadCredential=node-token:{_plain('token path', str(token_path))}
{who}
# Read logs the way an on-call engineer would; add groups for kubeconfig or docker here.
SupplementaryGroups=systemd-journal adm
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
Restart=on-failure
RestartSec=5
# 78: wrong token, revoked node or unverifiable certificate. Retrying cannot fix those.
RestartPreventExitStatus=78

[Install]
WantedBy=multi-user.target
"""


def install_command(*, server: str, node_id: str, node_name: str, token: str) -> str:
    """The one line an admin pastes on a new node (shown once, with the token, when the node is created)."""
    args = ["squads", "agent", "install", "--server", server, "--node-id", node_id, "--node-name", node_name,
            "--token-stdin", "--enable"]
    return f"printf '%s' {shlex.quote(token)} | sudo {shlex.join(args)}"


def write_files(
    *, root: Path, unit: str, token: str, token_path: Path = TOKEN_PATH, unit_dir: Path = UNIT_DIR
) -> tuple[Path, Path]:
    """Write the token (mode 600) and the unit under ``root``; returns both paths."""
    token_file = root / token_path.relative_to("/")
    unit_file = root / unit_dir.relative_to("/") / UNIT_NAME
    token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token_file.touch(mode=0o600, exist_ok=True)
    token_file.chmod(0o600)
    token_file.write_text(token + "\n")
    unit_file.parent.mkdir(parents=True, exist_ok=True)
    unit_file.write_text(unit)
    return token_file, unit_file
