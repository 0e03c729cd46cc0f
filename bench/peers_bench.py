"""The peer comparison: evalharness against Dramatiq 2.2 and SAQ 0.26 on the same embedded
server, each with its library's defaults, 2 worker processes of concurrency 10 (20 for W2).

Each workload runs in a fresh process per library (``bench/peer_<library>.py``; the peers from
the virtual environment ``bash bench/peers`` makes under bench/), rounds interleaved, and the
table shows the median of the rounds with the ratio ours ÷ best peer.  ``--before REF`` adds
the evalharness of a git revision as a column, measured in the same rounds.

Usage: bash bench/peers [--quick] [--rounds N] [--before REF]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOADS = ("w1", "single", "bulk", "w2", "w3")
# (label, workload, metric, higher is better, format)
ROWS = (
    ("W1 20,000 no-op jobs, dispatched first, then processed: jobs/s", "w1", "jobs_per_s", True, "{:,.0f}"),
    ("W1 worker CPU per job (ms)", "w1", "worker_cpu_ms", False, "{:.3f}"),
    ("W1 Redis CPU per job (µs)", "w1", "redis_cpu_us", False, "{:.0f}"),
    ("dispatch one by one from one client: jobs/s", "single", "jobs_per_s", True, "{:,.0f}"),
    ("Redis commands per single dispatch", "single", "commands", False, "{:.1f}"),
    ("round trips per single dispatch", "single", "round_trips", False, "{:.1f}"),
    ("bulk dispatch: jobs/s", "bulk", "jobs_per_s", True, "{:,.0f}"),
    ("W2 2,000 × 50 ms at concurrency 40, dispatch → last done ÷ ideal 2.5 s", "w2", "ratio", False, "{:.3f}"),
    ("W3 idle workers, 500 jobs 5 ms apart, dispatch → start p50 (ms)", "w3", "p50_ms", False, "{:.2f}"),
    ("W3 dispatch → start p99 (ms)", "w3", "p99_ms", False, "{:.2f}"),
    ("eval run 2,000 × 50 ms, concurrency 40: wall ÷ ideal", "eval", "ratio", False, "{:.3f}"),
)
MEMORY = (
    ("RSS of an idle worker (MB)", "idle_worker_mb"),
    ("RSS of a worker with 1,000 jobs in flight (MB)", "busy_worker_mb"),
    ("RSS of the daemon (MB)", "daemon_mb"),
    ("RSS of the console (MB)", "console_mb"),
)


def checkout(ref: str) -> str:
    """A PYTHONPATH under which ``evalharness`` is the code of git revision ``ref``."""
    tree = Path(tempfile.mkdtemp(prefix="peers-before."))
    src = tree / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg = tree / "path" / "evalharness"
    pkg.mkdir(parents=True)
    for sub in ("core", "daemon", "tui"):
        (pkg / sub).symlink_to(src / sub)
    return str(tree / "path")


def run(
    system: str, workload: str, url: str, peers_python: str, before_path: str | None, env_extra: dict[str, str]
) -> dict[str, float]:
    env = dict(os.environ, **env_extra)
    if system in ("ours", "before"):
        cmd = [sys.executable, str(HERE / "peer_ours.py"), workload, "--url", url]
        if system == "before" and before_path:
            env["PYTHONPATH"] = os.pathsep.join([before_path, str(HERE)])
    else:
        cmd = [peers_python, str(HERE / f"peer_{system}.py"), workload, "--url", url]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, float] = json.loads(line[7:])
            return result
    raise SystemExit(f"{system} {workload} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--peers-python", required=True, help="the python of the peers' virtual environment")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one round, W1 with 5,000 jobs, W3 with 200")
    ap.add_argument("--before", metavar="REF", help="also measure evalharness at this git revision")
    ap.add_argument("--json", metavar="FILE", help="also write every measurement to FILE")
    args = ap.parse_args()
    env_extra = {"PEERBENCH_W1_JOBS": "5000", "PEERBENCH_W3_JOBS": "200"} if args.quick else {}
    rounds = 1 if args.quick else args.rounds
    before_path = checkout(args.before) if args.before else None
    systems = ["ours"] + (["before"] if before_path else []) + ["dramatiq", "saq"]
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for rnd in range(rounds):
        for workload in WORKLOADS + ("eval",):
            order = systems[rnd % len(systems) :] + systems[: rnd % len(systems)]  # interleaved
            for system in order:
                if workload == "eval" and system not in ("ours", "before"):
                    continue
                print(f"round {rnd + 1}/{rounds}: {workload} {system}", file=sys.stderr, flush=True)
                results.setdefault((system, workload), []).append(
                    run(system, workload, args.url, args.peers_python, before_path, env_extra)
                )
    mem = {
        s: run(s, "memory", args.url, args.peers_python, before_path, env_extra)
        for s in systems
        if s in ("ours", "before")
    }

    def median(system: str, workload: str, metric: str) -> float | None:
        values = [r[metric] for r in results.get((system, workload), []) if metric in r]
        return statistics.median(values) if values else None

    names = {
        "ours": "evalharness",
        "before": f"evalharness {args.before}",
        "dramatiq": "Dramatiq 2.2",
        "saq": "SAQ 0.26",
    }
    header = ["workload", *(names[s] for s in systems), "ours ÷ best peer"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for label, workload, metric, higher, fmt in ROWS:
        label = label.replace("20,000", f"{int(env_extra.get('PEERBENCH_W1_JOBS', 20000)):,}").replace(
            "500 jobs", f"{int(env_extra.get('PEERBENCH_W3_JOBS', 500))} jobs"
        )
        values = {s: median(s, workload, metric) for s in systems}
        peers = [v for s, v in values.items() if s in ("dramatiq", "saq") and v is not None]
        best = (max(peers) if higher else min(peers)) if peers else None
        ours = values["ours"]
        ratio = f"{ours / best:.2f}" if ours is not None and best else "—"
        lines.append(
            "| "
            + " | ".join([label, *("—" if values[s] is None else fmt.format(values[s]) for s in systems), ratio])
            + " |"
        )
    for label, metric in MEMORY:
        lines.append(
            "| " + " | ".join([label, *(f"{mem[s][metric]:.1f}" if s in mem else "—" for s in systems), "—"]) + " |"
        )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}; median of {rounds} interleaved round(s)"
    )
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(
            json.dumps({f"{s}/{w}": v for (s, w), v in results.items()} | {"memory": mem}, indent=1)
        )


if __name__ == "__main__":
    main()
