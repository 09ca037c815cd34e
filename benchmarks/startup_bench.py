"""Start-up time of the ``squads`` command (issue 11 §5).

Three commands, each run as a fresh process (the installed ``squads`` console script
next to this interpreter), wall time with perf_counter, after one warm-up run so the
page cache and the .pyc files are warm:
- ``squads --help``;
- ``squads agent --help`` (the agent's start-up: what every server pays);
- ``squads policy check --agent k8s/pod-diagnostics -- kubectl get pods -n prod``.

For each: best and median of --runs runs, and how many modules the command imports
(``python -X importtime``). Prints a table, or one JSON object with --json.
Targets on the 2-core reference machine: ``squads --help`` <= 0.4 s and
``squads agent --help`` <= 0.3 s, judged on the best run (the least disturbed by
other load); the median is shown so a noisy machine is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SQUADS = BIN / "squads"
COMMANDS: dict[str, list[str]] = {
    "squads --help": ["--help"],
    "squads agent --help": ["agent", "--help"],
    "squads policy check": ["policy", "check", "--agent", "k8s/pod-diagnostics", "--", "kubectl", "get", "pods",
                            "-n", "prod"],
}
TARGETS_S = {"squads --help": 0.4, "squads agent --help": 0.3}


def run_once(args: list[str]) -> float:
    """Wall time of one ``squads`` process; a failing command is an error, not a figure."""
    start = time.perf_counter()
    done = subprocess.run([str(SQUADS), *args], capture_output=True, env={**os.environ, "COLUMNS": "80"})
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"squads {' '.join(args)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


def modules_loaded(args: list[str]) -> int:
    """How many modules the command imports, counted by the interpreter itself."""
    code = "import sys; from squads.cli import main; sys.argv = ['squads', *sys.argv[1:]]; main()"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *args], capture_output=True, text=True)
    return sum(1 for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (default 7)")
    args = parser.parse_args()
    if not SQUADS.exists():
        raise SystemExit(f"{SQUADS} not found: install the package in this interpreter's environment first")
    out: dict[str, dict[str, float | int | bool | None]] = {}
    for label, argv in COMMANDS.items():
        run_once(argv)  # warm-up
        times = [run_once(argv) for _ in range(args.runs)]
        target = TARGETS_S.get(label)
        out[label] = {
            "best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
            "modules": modules_loaded(argv), "target_s": target,
            "ok": None if target is None else min(times) <= target,
        }
    if args.json:
        print(json.dumps(out))
        return
    print(f"{'command':<22} {'best s':>7} {'median s':>9} {'modules':>8} {'target s':>9}  ok")
    for label, row in out.items():
        target = "" if row["target_s"] is None else f"{row['target_s']:.2f}"
        ok = "" if row["ok"] is None else ("yes" if row["ok"] else "NO")
        print(f"{label:<22} {row['best_s']:>7.3f} {row['median_s']:>9.3f} {row['modules']:>8} {target:>9}  {ok}")


if __name__ == "__main__":
    main()
