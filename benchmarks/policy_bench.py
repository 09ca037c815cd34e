"""Decision latency of the policy engine.

Two workloads, each timed per decision with perf_counter_ns:
- the adversarial corpus (tests/data/adversarial_corpus.jsonl, all denied);
- a realistic allowed mix: every shipped tool rendered with typical values.

Prints a table, or one JSON object with --json (keys p50_us, p99_us for the
combined run, and per-workload figures). Target: p50 <= 20 us on 2 cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from permissions.engine import PolicyEngine  # noqa: E402
from permissions.models import NodeContext  # noqa: E402
from permissions.validators import from_spec  # noqa: E402
from squads.service import default_grants, load_squads  # noqa: E402
from tools.service import render  # noqa: E402

# Typical values for pattern ("re:") parameters: logs, certificates, units, durations, group names.
RE_SAMPLES = ("/var/log/postgresql/postgresql-16-main.log", "/etc/ssl/certs/www.example.com.pem",
              "/var/log/php8.2-fpm.log", "php8.2-fpm", "1h", "sudo")
SAMPLE = {"k8s_name": "payment-service-7d9f8b-xyz", "k8s_selector": "app=postgres", "pid": "48211",
          "int:0..1000": "3", "int:1..10000": "200", "int:1..5000": "200", "int:1..1000": "50"}


def realistic_mix(squads) -> list[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    mix = []
    for squad in squads.values():
        for tool in squad.tools:
            values: dict[str, object] = {}
            for name, param in tool.params.items():
                if param.is_flag:
                    values[name] = True
                elif param.default is not None:
                    values[name] = param.default
                elif param.type in SAMPLE:
                    values[name] = SAMPLE[param.type]
                elif param.type.startswith("enum:"):
                    values[name] = param.type[5:].split(",")[0]
                elif param.type.startswith("path:"):
                    values[name] = param.type[5:].split(",")[0] + "/current.log"
                elif param.type.startswith("re:"):
                    # A pattern parameter takes the first typical value it accepts (a log, a certificate).
                    sample = next((v for v in RE_SAMPLES if from_spec(param.type).check(v)), None)
                    if sample is None:
                        raise SystemExit(f"policy_bench: no typical value for {tool.name}.{name} ({param.type}); "
                                         "add one to RE_SAMPLES")
                    values[name] = sample
            mix.append((squad.agent_id(tool.agent), render(tool, values)))
    return mix


def measure(engine: PolicyEngine, node: NodeContext, cases: list[tuple[str, list[str]]], rounds: int) -> list[float]:
    for agent, argv in cases:  # warm the per-(agent, node) rule cache
        engine.decide(agent=agent, node=node, argv=argv)
    samples: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(rounds):
            for agent, argv in cases:
                start = clock()
                engine.decide(agent=agent, node=node, argv=argv)
                samples.append((clock() - start) / 1000)
    finally:
        gc.enable()
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    squads = load_squads()
    engine = PolicyEngine(defaults=default_grants(squads.values()))
    node = NodeContext.of("bench", {"env": "production"})
    corpus = [(c["agent"], c["argv"]) for c in map(json.loads, (ROOT / "tests/data/adversarial_corpus.jsonl").read_text().splitlines())]
    mix = realistic_mix(squads)
    results = {}
    for name, cases in (("corpus", corpus), ("allowed_mix", mix)):
        samples = measure(engine, node, cases, args.rounds)
        results[name] = {"decisions": len(samples), "p50_us": round(pct(samples, 0.5), 2),
                         "p99_us": round(pct(samples, 0.99), 2), "mean_us": round(statistics.fmean(samples), 2)}
    combined = measure(engine, node, corpus + mix, args.rounds)
    out = {"p50_us": round(pct(combined, 0.5), 2), "p99_us": round(pct(combined, 0.99), 2),
           "target_p50_us": 20, **{f"{k}_{m}": v for k, r in results.items() for m, v in r.items()}}
    if args.json:
        print(json.dumps(out))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Policy decision latency (microseconds)")
    for col in ("workload", "decisions", "p50", "p99", "mean"):
        table.add_column(col, justify="right" if col != "workload" else "left")
    for name, r in results.items():
        table.add_row(name, str(r["decisions"]), str(r["p50_us"]), str(r["p99_us"]), str(r["mean_us"]))
    table.add_row("combined", str(len(combined)), str(out["p50_us"]), str(out["p99_us"]), "")
    Console().print(table)
    print(f"target: p50 <= 20 us; measured p50 {out['p50_us']} us")


if __name__ == "__main__":
    main()
