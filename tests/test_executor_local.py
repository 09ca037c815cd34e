"""LocalExecutor against real processes: kills, caps, environment, no shell."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tools.executors.base import TRUNCATION_MARKER, ExecResult, output_digest
from tools.executors.local import LocalExecutor, clean_environment

PY = sys.executable  # an absolute path, as the executor requires

# A parent that starts a child ignoring SIGTERM; both hold the output pipes.
# argv: MODE PIDFILE, MODE one of "sleep", "sleep-ignore-term", "exit".
GROUP_HELPER = r'''
import os, signal, subprocess, sys, time

def write_pid(path):
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)  # readers never see a half-written file

mode, pidfile = sys.argv[1], sys.argv[2]
if mode == "child":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_pid(pidfile)
    print("child ready", flush=True)
    time.sleep(120)
    sys.exit(0)
if mode == "sleep-ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
write_pid(pidfile + ".parent")
subprocess.Popen([sys.executable, __file__, "child", pidfile + ".child"])
for _ in range(1000):
    if os.path.exists(pidfile + ".child"):
        break
    time.sleep(0.01)
print("parent ready", flush=True)
if mode != "exit":
    time.sleep(120)
'''


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs: absent, or a zombie nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, limit: float = 5.0) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.02)
    return _gone(pid)


def _run_group(tmp_path: Path, mode: str, timeout: float) -> tuple[ExecResult, float, int, int]:
    helper = tmp_path / "helper.py"
    helper.write_text(GROUP_HELPER)
    pidfile = str(tmp_path / "pid")
    started = time.monotonic()
    result = LocalExecutor().run([PY, str(helper), mode, pidfile], timeout=timeout, max_output=10_000)
    elapsed = time.monotonic() - started
    parent = int(Path(pidfile + ".parent").read_text())
    child = int(Path(pidfile + ".child").read_text())
    return result, elapsed, parent, child


def test_timeout_kills_whole_group_including_child_ignoring_sigterm(tmp_path: Path) -> None:
    result, elapsed, parent, child = _run_group(tmp_path, "sleep", timeout=2.0)
    assert result.timed_out
    assert elapsed < 12
    assert result.exit_code == -signal.SIGTERM
    assert "parent ready" in result.stdout and "child ready" in result.stdout
    assert _wait_gone(parent), "parent still running"
    assert _wait_gone(child), "child that ignores SIGTERM still running"


def test_timeout_escalates_to_sigkill(tmp_path: Path) -> None:
    result, elapsed, parent, child = _run_group(tmp_path, "sleep-ignore-term", timeout=2.0)
    assert result.timed_out
    assert elapsed < 12
    assert result.exit_code == -signal.SIGKILL
    assert _wait_gone(parent) and _wait_gone(child)


def test_children_holding_pipes_after_exit_do_not_keep_us_waiting(tmp_path: Path) -> None:
    result, elapsed, _parent, child = _run_group(tmp_path, "exit", timeout=60.0)
    assert elapsed < 10
    assert not result.timed_out
    assert result.exit_code == 0
    assert "parent ready" in result.stdout
    assert _wait_gone(child), "leftover child in the process group was not killed"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_cap_kills_flooding_command(stream: str) -> None:
    cap = 100_000
    code = f"import sys\nwhile True:\n    sys.{stream}.buffer.write(b'x' * 65536)\n"
    started = time.monotonic()
    result = LocalExecutor().run([PY, "-c", code], timeout=60, max_output=cap)
    assert time.monotonic() - started < 10
    assert not result.timed_out
    assert result.exit_code == -signal.SIGKILL
    text = getattr(result, stream)
    assert text == "x" * cap + TRUNCATION_MARKER.format(limit=cap)
    assert getattr(result, f"{stream}_truncated") and result.truncated
    other = "stderr" if stream == "stdout" else "stdout"
    assert not getattr(result, f"{other}_truncated")
    kept = (b"x" * cap, b"") if stream == "stdout" else (b"", b"x" * cap)
    assert result.output_sha256 == output_digest(*kept)


def test_output_exactly_at_cap_is_not_truncated() -> None:
    result = LocalExecutor().run([PY, "-c", "print('y' * 99, end='!')"], timeout=30, max_output=100)
    assert result.stdout == "y" * 99 + "!"
    assert not result.truncated
    assert result.exit_code == 0


def test_large_stdout_and_stderr_read_concurrently() -> None:
    # Far more than a pipe buffer on each stream, interleaved: reading one
    # pipe at a time would deadlock.
    code = (
        "import sys\n"
        "for i in range(256):\n"
        "    sys.stdout.buffer.write(b'o' * 4096); sys.stdout.flush()\n"
        "    sys.stderr.buffer.write(b'e' * 4096); sys.stderr.flush()\n"
    )
    result = LocalExecutor().run([PY, "-c", code], timeout=30, max_output=4 * 1024 * 1024)
    assert result.exit_code == 0 and not result.timed_out
    assert result.stdout == "o" * 256 * 4096
    assert result.stderr == "e" * 256 * 4096
    assert not result.truncated


def test_environment_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUADS_TEST_SECRET", "hunter2")
    monkeypatch.setenv("SQUADS_TEST_PASSED", "visible")
    monkeypatch.setenv("PAGER", "less")
    monkeypatch.delenv("SQUADS_TEST_UNSET", raising=False)
    executor = LocalExecutor(
        env_passthrough=["SQUADS_TEST_PASSED", "SQUADS_TEST_UNSET", "PAGER"],
        extra_env={"KUBECONFIG": "/etc/squads/kubeconfig"},
    )
    result = executor.run(["/usr/bin/env"], timeout=30, max_output=100_000)
    assert result.exit_code == 0
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert "SQUADS_TEST_SECRET" not in env
    assert "hunter2" not in result.stdout
    assert env == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PAGER": "cat",
        "SYSTEMD_PAGER": "cat",
        "SYSTEMD_PAGERSECURE": "1",
        "LESSSECURE": "1",
        "SYSTEMD_COLORS": "0",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "SQUADS_TEST_PASSED": "visible",
        "KUBECONFIG": "/etc/squads/kubeconfig",
    }


def test_clean_environment_rules() -> None:
    env = clean_environment(["A", "PAGER"], {"TERM": "xterm"}, environ={"A": "1", "B": "2", "PAGER": "less"})
    assert env["A"] == "1" and "B" not in env
    assert env["PAGER"] == "cat"  # inherited values never replace the fixed ones
    assert env["TERM"] == "xterm"  # explicit configuration does
    with pytest.raises(ValueError, match="invalid environment variable"):
        clean_environment((), {"BAD=NAME": "x"}, environ={})


def test_stdin_is_dev_null() -> None:
    code = "import os, sys\nprint(repr(sys.stdin.read()))\nprint(os.path.realpath('/proc/self/fd/0'))"
    result = LocalExecutor().run([PY, "-c", code], timeout=30, max_output=10_000)
    assert not result.timed_out
    assert result.stdout.splitlines() == ["''", "/dev/null"]


def test_stdout_stderr_exit_code_and_cwd() -> None:
    code = "import os, sys\nprint(os.getcwd())\nprint('oops', file=sys.stderr)\nsys.exit(3)"
    result = LocalExecutor().run([PY, "-c", code], timeout=30, max_output=10_000)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "/\n", "oops\n")
    assert not result.timed_out and not result.truncated
    assert result.duration_ms >= 0


def test_killed_by_signal_reports_negative_code() -> None:
    code = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    result = LocalExecutor().run([PY, "-c", code], timeout=30, max_output=10_000)
    assert result.exit_code == -signal.SIGKILL
    assert not result.timed_out


def test_arguments_reach_the_program_literally() -> None:
    args = ["$(id)", "; rm -rf /tmp/x", "*", "a b", "`uname`", "|", ">out"]
    code = "import sys\nprint(repr(sys.argv[1:]))"
    result = LocalExecutor().run([PY, "-c", code, *args], timeout=30, max_output=10_000)
    assert result.stdout == repr(args) + "\n"


def test_output_sha256_is_digest_of_raw_bytes() -> None:
    code = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfeok')\nsys.stderr.buffer.write(b'err\\x00')"
    result = LocalExecutor().run([PY, "-c", code], timeout=30, max_output=10_000)
    assert result.output_sha256 == output_digest(b"\xff\xfeok", b"err\x00")
    assert result.stdout == "\ufffd\ufffdok"


def test_missing_program_returns_127() -> None:
    result = LocalExecutor().run(["/nonexistent/dir/prog", "-x"], timeout=30, max_output=10_000)
    assert result.exit_code == 127
    assert result.stderr == "cannot execute /nonexistent/dir/prog: No such file or directory"
    assert result.stdout == "" and not result.timed_out


def test_non_executable_program_returns_126(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/true\n")
    script.chmod(0o644)
    for target in (script, tmp_path):
        result = LocalExecutor().run([str(target)], timeout=30, max_output=10_000)
        assert result.exit_code == 126
        assert result.stderr == f"cannot execute {target}: Permission denied"


@pytest.mark.parametrize(
    "argv",
    [["python3", "-c", "pass"], ["./prog"], [""], [], "/usr/bin/env", ["/usr/bin/env", 3], ["/usr/bin/env", "a\0b"]],
)
def test_bad_argv_raises_value_error(argv: object) -> None:
    with pytest.raises(ValueError):
        LocalExecutor().run(argv, timeout=30, max_output=10_000)  # type: ignore[arg-type]


def test_relative_program_message_is_clear() -> None:
    with pytest.raises(ValueError, match="absolute path"):
        LocalExecutor().run(["ls", "-l"], timeout=30, max_output=10_000)


def test_bad_limits_raise_value_error() -> None:
    with pytest.raises(ValueError, match="timeout"):
        LocalExecutor().run(["/usr/bin/env"], timeout=0, max_output=10)
    with pytest.raises(ValueError, match="max_output"):
        LocalExecutor().run(["/usr/bin/env"], timeout=5, max_output=-1)
