"""An attacker's review of issue 10's file reading and key handling (hard links, the environment, the key file).

A hard link is no link to ``O_NOFOLLOW``: it is the file itself under a second
name. The kernel stops an unprivileged user from making one to a file they do
not own (``fs.protected_hardlinks``); the executor must not depend on that
setting. Squads' own secrets must never reach a command's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from squads.audit.keys import AuditKeyError, load_key
from squads.nodes.models import NodeConfig
from permissions.engine import PolicyEngine
from permissions.models import GrantSpec, NodeContext
from tools.executors.base import RunContext
from tools.executors.local import LocalExecutor, clean_environment
from tools.executors.safe_paths import PathRefused, open_no_follow

AGENT = "database/log-reader"
SECRET = "root:$6$" + uuid.uuid4().hex + ":19000:0:99999:7:::"
NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user owns needs root")


@pytest.fixture
def planted() -> Iterator[tuple[Path, Path]]:
    """``logs/`` owned by nobody (like /var/log/postgresql for postgres) and a root-only ``secret`` beside it,
    in a folder nobody can reach (pytest's own tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="squads-hardlink-", dir="/tmp"))
    try:
        base.chmod(0o755)
        logs = base / "logs"
        logs.mkdir()
        secret = base / "secret"
        secret.write_text(SECRET + "\n")
        secret.chmod(0o600)
        if os.geteuid() == 0:
            os.chown(logs, NOBODY, NOBODY)
        yield logs, secret
    finally:
        shutil.rmtree(base)


def tail(logs: Path, name: str):  # type: ignore[no-untyped-def]
    engine = PolicyEngine(grants=[GrantSpec(name="logs", agents=[AGENT], allow=[f"tail -n {{int:1..500}} {{path:{logs}}}"])])
    decision = engine.decide(agent=AGENT, node=NodeContext.of("local"), argv=["tail", "-n", "5", str(logs / name)])
    assert decision.allowed, decision.reason
    return LocalExecutor().run(decision.exec_argv(), timeout=10, max_output=100_000,
                               context=RunContext(decision=decision, request_id=uuid.uuid4().hex))


@root_only
def test_a_hard_link_to_another_users_file_in_a_folder_others_write_is_refused(planted: tuple[Path, Path]) -> None:
    """What protected_hardlinks=0 would let the folder's owner plant: root makes the link here to stand in."""
    logs, secret = planted
    os.link(secret, logs / "postgresql-16-main.log.2")
    with pytest.raises(PathRefused, match="has 2 hard links and its folder can be written by users other than"):
        tail(logs, "postgresql-16-main.log.2")
    # ... and through the whole executor: nothing ran, so nothing of the secret is anywhere.
    with pytest.raises(PathRefused):
        open_no_follow(str(logs / "postgresql-16-main.log.2"))


@root_only
def test_a_hard_link_in_a_folder_writable_by_others_is_refused_even_with_one_owner(tmp_path: Path) -> None:
    """Same owner, but a group-writable folder (/var/log on Ubuntu is root:syslog 0775)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    (tmp_path / "secret").write_text(SECRET)
    os.link(tmp_path / "secret", shared / "x.log")
    with pytest.raises(PathRefused, match="hard links"):
        open_no_follow(str(shared / "x.log"))


def test_a_file_with_one_name_or_links_in_its_owners_own_folder_is_read(tmp_path: Path) -> None:
    """Not over-refused: a rotated log hard-linked by its owner in its owner's 0755 folder reads fine."""
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    (logs / "app.log").write_text("ordinary\n")
    os.link(logs / "app.log", logs / "app.log.1")
    result = tail(logs, "app.log.1")
    assert result.exit_code == 0 and result.stdout == "ordinary\n"


@root_only
def test_the_kernel_refuses_an_unprivileged_hard_link_when_protected_hardlinks_is_on(planted: tuple[Path, Path]) -> None:
    """The first line of defence, as the unprivileged folder owner really is; the check above is the second."""
    logs, secret = planted
    protected = Path("/proc/sys/fs/protected_hardlinks").read_text().strip() == "1"
    made = subprocess.run(["/usr/bin/ln", str(secret), str(logs / "b.log")], user=NOBODY, group=NOBODY,
                          capture_output=True, text=True)
    if protected:
        assert made.returncode != 0 and "Operation not permitted" in made.stderr
    else:  # then only the executor's check stands between the link and the secret
        assert made.returncode == 0
        with pytest.raises(PathRefused, match="hard links"):
            tail(logs, "b.log")


def test_magic_links_and_descriptor_paths_a_user_types_are_refused() -> None:
    for value in ("/proc/self/root/etc/passwd", "/dev/fd/0", "/dev/stdin", "/proc/thread-self/environ",
                  "/proc/1/cwd/", "/proc/1/exe"):
        with pytest.raises(PathRefused):
            open_no_follow(value)


# -- Squads' own secrets never reach a command ---------------------------------------------------
@pytest.mark.parametrize("name", ["SQUADS_AUDIT_KEY", "squads_audit_key", "SQUADS_AUDIT_KEY_FILE", "SQUADS_DATABASE_URL"])
def test_the_executor_never_passes_squads_secrets(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, "00" * 32)
    with pytest.raises(ValueError, match="one of Squads' own secrets"):
        LocalExecutor(env_passthrough=[name])
    with pytest.raises(ValueError, match="one of Squads' own secrets"):
        clean_environment((), {name: "x"}, environ={})


def test_a_command_does_not_see_the_audit_key_of_the_process_that_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    key = uuid.uuid4().hex * 2
    monkeypatch.setenv("SQUADS_AUDIT_KEY", key)
    result = LocalExecutor(env_passthrough=["KUBECONFIG"]).run(["/usr/bin/env"], timeout=10, max_output=100_000)
    assert result.exit_code == 0 and key not in result.stdout and "SQUADS" not in result.stdout


@pytest.mark.parametrize("field", ["env_passthrough", "env"])
@pytest.mark.parametrize("name", ["SQUADS_AUDIT_KEY", "squads_database_url", "LD_PRELOAD", "PGPASSWORD", "BASH_ENV",
                                  "STRIPE_API_KEY"])
def test_a_node_config_refuses_unsafe_names_passed_through_as_well_as_set(field: str, name: str) -> None:
    value: object = [name] if field == "env_passthrough" else {name: "x"}
    with pytest.raises(ValidationError, match=f"{field} {name}: not allowed for a node"):
        NodeConfig.model_validate({"name": "db-1", field: value})
    assert NodeConfig.model_validate({"name": "db-1", "env_passthrough": ["KUBECONFIG"]}).env_passthrough == ["KUBECONFIG"]


# -- the key file -------------------------------------------------------------------------------
@root_only
def test_a_key_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """A 0600 file its owner could have written (or read) before squads, running as root, first used it."""
    path = tmp_path / "audit.key"
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o600)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(AuditKeyError, match=f"belongs to uid {NOBODY}, not to the user squads runs as"):
        load_key(key=None, key_file=path)
    os.chown(path, os.geteuid(), os.getegid())
    assert load_key(key=None, key_file=path) == bytes.fromhex("ab" * 32)
