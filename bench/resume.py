"""What a resume costs: the same eval run (2,000 samples x 50 ms SUT, concurrency 40, 2 worker
processes) run once without interruption and once SIGKILLed at half way and resumed with
`evalharness run --resume`.  Both are timed as a user sees them, start-up of every `evalharness`
command included: uninterrupted = one command; resumed = the first command until the kill plus
the whole `--resume` command.  Prints resumed / uninterrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import PREFIX, env, evalharness_command, start_workers, stop, wait_workers
from evalharness.core.connection import async_client
from evalharness.core.keys import GlobalKeys
from evalharness.core.queue import Queue

HERE = Path(__file__).resolve().parent


def producer(url: str, *args: str) -> subprocess.Popen[bytes]:
    cmd = [evalharness_command(), "run", *args, "--quiet"]
    return subprocess.Popen(cmd, env=env(url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def one(url: str, data: Path, samples: int, concurrency: int, kill_at: float | None) -> tuple[float, int]:
    """Wall seconds of the run (killed at ``kill_at`` of its samples and resumed, when given) and
    how many samples were already done at the kill."""
    client = async_client(url)
    await client.flushdb()
    q = Queue(client, PREFIX)
    workers = start_workers(url, "evals", 2, concurrency // 2)
    args = (str(data), "--sut", "benchjobs:sut_50ms", "--metric", "exact-match", "--concurrency", str(concurrency))
    done_at_kill = 0
    try:
        await wait_workers(q, "evals", 2)
        t0 = time.perf_counter()
        first = producer(url, *args)
        if kill_at is None:
            _out, err = await asyncio.to_thread(first.communicate)
            if first.returncode != 0:
                raise SystemExit(f"the run failed ({first.returncode}): {err.decode()[-500:]}")
            return time.perf_counter() - t0, 0
        keys = GlobalKeys(PREFIX)
        run_id = ""
        while not run_id:
            ids = await client.zrange(keys.runs, 0, -1)
            run_id = str(ids[0]) if ids else ""
            await asyncio.sleep(0.002)
        sink = q.keys("evals").results(f"run-{run_id}")
        deadline = time.monotonic() + 600
        while (done_at_kill := await client.hlen(sink)) < samples * kill_at:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {done_at_kill} of {samples} samples done")
            await asyncio.sleep(0.002)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.perf_counter() - t0
        t1 = time.perf_counter()
        second = producer(url, "--resume", run_id)
        _out, err = await asyncio.to_thread(second.communicate)
        if second.returncode != 0:
            raise SystemExit(f"the resume failed ({second.returncode}): {err.decode()[-500:]}")
        assert await client.hlen(sink) == samples
        return killed + time.perf_counter() - t1, done_at_kill
    finally:
        stop(workers)
        await client.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--samples", type=int, default=2_000)
    ap.add_argument("--concurrency", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each kind; the medians are compared")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bench.jsonl"
        data.write_text(
            "".join(
                json.dumps({"id": f"s{i}", "input": f"q{i}", "expected_output": f"q{i}"}) + "\n"
                for i in range(args.samples)
            )
        )
        plain, resumed, at_kill = [], [], []
        for _ in range(args.repeat):
            plain.append((await one(args.url, data, args.samples, args.concurrency, None))[0])
            wall, done = await one(args.url, data, args.samples, args.concurrency, 0.5)
            resumed.append(wall)
            at_kill.append(done)
    plain.sort()
    resumed.sort()
    mid_plain, mid_resumed = plain[len(plain) // 2], resumed[len(resumed) // 2]
    print(
        f"resume after a kill at half way: {args.samples} samples x 50 ms SUT, "
        f"concurrency {args.concurrency}, 2 worker processes"
    )
    print(
        f"  uninterrupted {mid_plain:.2f} s   killed + resumed {mid_resumed:.2f} s   (median of {args.repeat}; "
        f"{min(at_kill)}-{max(at_kill)} samples done at the kill; start-up of each command included)"
    )
    print(f"  ratio {mid_resumed / mid_plain:.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    asyncio.run(main())
