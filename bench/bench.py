"""Engine benchmarks on one machine, each against a baseline measured in the same run.

1. no-op throughput: dispatch -> 2 worker processes -> ack, versus a naive worker that pays
   several round trips per job (the usual Python job queue pattern).
2. pickup latency: an idle worker starting a freshly dispatched job (p50/p99).
3. an eval run as a user starts it: `evalharness run` of 2,000 samples of a 50 ms async SUT at
   concurrency 40, timed from the moment the command starts (interpreter start-up and imports
   included) until it has exited with every result collected and the report written, the two
   worker processes already running as a daemon would have them; against the ideal
   2,000 x 0.05 / 40 = 2.5 s.  Beside it, measured in the same rounds: the same run called
   in-process (no start-up) and the floor the workers set, the 2,000 jobs of 50 ms queued at
   once (what no producer can beat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evalharness.core.connection import async_client
from evalharness.core.datasets import Dataset, Sample
from evalharness.core.evalrun import RunOptions, run_lazy_parallel
from evalharness.core.queue import JobRequest, Queue

HERE = Path(__file__).resolve().parent
PREFIX = "bench"


def env(url: str) -> dict[str, str]:
    e = dict(os.environ)
    e["EVALHARNESS_REDIS_URL"] = url
    e["EVALHARNESS_PREFIX"] = PREFIX
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")])
    return e


def start_workers(
    url: str, queue: str, n: int, concurrency: int, telemetry: bool = True
) -> list[subprocess.Popen[bytes]]:
    cmd = [
        sys.executable,
        "-m",
        "evalharness.daemon.worker",
        "--queue",
        queue,
        "--concurrency",
        str(concurrency),
        "--import",
        "benchjobs",
        "--telemetry" if telemetry else "--no-telemetry",
    ]
    return [subprocess.Popen(cmd, env=env(url)) for _ in range(n)]


def start_naive_workers(url: str, key: str, n: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    cmd = [sys.executable, str(HERE / "naive_worker.py"), url, key, str(concurrency)]
    return [subprocess.Popen(cmd, env=env(url)) for _ in range(n)]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def wait_workers(q: Queue, queue: str, n: int) -> None:
    deadline = time.monotonic() + 30
    while await q.live_workers(queue) < n:
        if time.monotonic() > deadline:
            raise SystemExit("workers did not start")
        await asyncio.sleep(0.05)


async def wait_count(client, key: str, field: str, n: int, within: float = 300) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while int(await client.hget(key, field) or 0) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {await client.hget(key, field)} of {n} jobs done")
        await asyncio.sleep(0.002)


async def throughput_ours(url: str, jobs: int, concurrency: int, telemetry: bool = True) -> float:
    client = async_client(url)
    await client.flushdb()
    q = Queue(client, PREFIX)
    workers = start_workers(url, "bench", 2, concurrency, telemetry)
    try:
        await wait_workers(q, "bench", 2)
        t0 = time.perf_counter()
        for start in range(0, jobs, 5000):
            await q.dispatch_many(
                JobRequest("bench.noop", i, queue="bench") for i in range(start, min(jobs, start + 5000))
            )
        await wait_count(client, q.keys("bench").stats, "completed", jobs)
        return jobs / (time.perf_counter() - t0)
    finally:
        stop(workers)
        await client.aclose()


async def throughput_naive(url: str, jobs: int, concurrency: int) -> float:
    client = async_client(url)
    await client.flushdb()
    key = "naive:q"
    workers = start_naive_workers(url, key, 2, concurrency)
    try:
        await asyncio.sleep(1.0)  # let both processes connect before the clock starts
        t0 = time.perf_counter()
        for start in range(0, jobs, 5000):
            async with client.pipeline(transaction=False) as pipe:
                for i in range(start, min(jobs, start + 5000)):
                    pipe.hset(f"{key}:job:{i}", mapping={"name": "bench.noop", "payload": "null"})
                    pipe.rpush(key, str(i))
                await pipe.execute()
        await wait_count(client, f"{key}:stats", "completed", jobs)
        return jobs / (time.perf_counter() - t0)
    finally:
        for w in workers:
            w.kill()
            w.wait()
        await client.aclose()


async def pickup_latency(url: str, samples: int) -> tuple[float, float]:
    client = async_client(url)
    await client.flushdb()
    q = Queue(client, PREFIX)
    workers = start_workers(url, "bench", 1, 10)
    lat: list[float] = []
    try:
        await wait_workers(q, "bench", 1)
        sink = "lat"
        done_key = q.keys("bench").results_done(sink)
        for i in range(samples):
            await asyncio.sleep(0.01)  # the worker is idle, blocked on its wake list
            t0 = time.time()
            await q.dispatch("bench.stamp", None, queue="bench", result_to=(sink, str(i), 600))
            await client.blpop([done_key], timeout=10)
            (value,) = await q.results("bench", sink, [str(i)])
            assert value is not None
            lat.append(value["result"] - t0)
        lat.sort()
        return statistics.median(lat) * 1000, lat[int(0.99 * (len(lat) - 1))] * 1000
    finally:
        stop(workers)
        await client.aclose()


async def lazy_parallel(url: str, samples: int, concurrency: int) -> float:
    client = async_client(url)
    await client.flushdb()
    q = Queue(client, PREFIX)
    workers = start_workers(url, "evals", 2, concurrency // 2)
    try:
        await wait_workers(q, "evals", 2)
        data = Dataset(
            Path("bench"), "bench", tuple(Sample(f"s{i}", f"q{i}", f"q{i}", {}, i + 1) for i in range(samples))
        )
        opts = RunOptions(concurrency=concurrency, queue="evals", timeout=30).validate()
        t0 = time.perf_counter()
        result = await run_lazy_parallel(client, PREFIX, data, "benchjobs:sut_50ms", opts)
        wall = time.perf_counter() - t0
        assert all(o.error is None for o in result.outcomes), "some samples failed"
        return wall
    finally:
        stop(workers)
        await client.aclose()


def write_dataset(path: Path, samples: int) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "input": f"q{i}", "expected_output": f"q{i}"}) + "\n" for i in range(samples)
        )
    )
    return path


def evalharness_command() -> str:
    """The `evalharness` program installed next to this interpreter (what a user runs)."""
    return str(Path(sys.executable).with_name("evalharness"))


async def eval_command(url: str, data: Path, samples: int, concurrency: int) -> float:
    """Wall seconds of `evalharness run` from its start until it exited with its report written."""
    client = async_client(url)
    await client.flushdb()
    q = Queue(client, PREFIX)
    workers = start_workers(url, "evals", 2, concurrency // 2)
    report = data.with_suffix(".report.json")
    report.unlink(missing_ok=True)
    cmd = [evalharness_command(), "run", str(data), "--sut", "benchjobs:sut_50ms", "--metric", "exact-match"]
    cmd += ["--concurrency", str(concurrency), "--quiet", "--json", str(report)]
    try:
        await wait_workers(q, "evals", 2)
        t0 = time.perf_counter()
        done = await asyncio.to_thread(subprocess.run, cmd, env=env(url), capture_output=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"the run failed ({done.returncode}): {done.stderr.decode()[-500:]}")
        rows = json.loads(report.read_text())["samples"]
        assert len(rows) == samples and all(r["error"] is None for r in rows), "some samples failed"
        return wall
    finally:
        stop(workers)
        await client.aclose()


async def all_queued(url: str, samples: int, concurrency: int) -> float:
    """Wall seconds of ``samples`` jobs of 50 ms dispatched at once to the same two workers."""
    client = async_client(url)
    await client.flushdb()
    q = Queue(client, PREFIX)
    workers = start_workers(url, "bench", 2, concurrency // 2)
    try:
        await wait_workers(q, "bench", 2)
        t0 = time.perf_counter()
        await q.dispatch_many(JobRequest("bench.sleep50", i, queue="bench") for i in range(samples))
        await wait_count(client, q.keys("bench").stats, "completed", samples)
        return time.perf_counter() - t0
    finally:
        stop(workers)
        await client.aclose()


async def pop_throughput(url: str, jobs: int, batches: int) -> float:
    """Jobs per second claimed by pop (count 10) from one queue whose jobs are spread over
    ``batches`` active batches (each a lane served round-robin)."""
    from evalharness.core.batches import Batches

    client = async_client(url)
    await client.flushdb()
    q = Queue(client, PREFIX)
    b = Batches(client, PREFIX, q)
    per = jobs // batches
    for i in range(batches):
        await b.create(f"b{i}", [JobRequest("bench.noop", j) for j in range(per)], queue="pops")
    t0 = time.perf_counter()
    got = 0
    while got < per * batches:
        got += len((await q.pop("pops", 10, 60, "bench")).jobs)
    rate = got / (time.perf_counter() - t0)
    await client.aclose()
    return rate


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64, help="per worker process, no-op benchmark")
    ap.add_argument("--samples", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the eval run figures; medians are printed")
    ap.add_argument("--only-eval", action="store_true", help="only the eval run figures")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))

    if args.only_eval:
        await eval_figures(args)
        return
    print(f"no-op jobs, {args.jobs} through 2 worker processes (concurrency {args.concurrency} each)")
    ours = await throughput_ours(args.url, args.jobs, args.concurrency)
    naive = await throughput_naive(args.url, args.jobs, args.concurrency)
    print(f"  evalharness     {ours:10,.0f} jobs/s")
    print(f"  naive baseline  {naive:10,.0f} jobs/s   (blocking pop + 4 round trips per job)")
    print(f"  ratio           {ours / naive:10.2f}x")

    off = await throughput_ours(args.url, args.jobs, args.concurrency, telemetry=False)
    on = await throughput_ours(args.url, args.jobs, args.concurrency, telemetry=True)
    print("telemetry recording (per-minute counters + runtime histogram in the ack script)")
    print(f"  off {off:10,.0f} jobs/s   on {on:10,.0f} jobs/s   on/off {on / off:.3f}")

    one = await pop_throughput(args.url, 20_000, 1)
    many = await pop_throughput(args.url, 20_000, 1_000)
    print("pop throughput, 20,000 ready jobs on one queue (pop count 10)")
    print(f"  1 batch {one:10,.0f} jobs/s   1,000 batches {many:10,.0f} jobs/s   ratio {many / one:.3f}")

    p50, p99 = await pickup_latency(args.url, 300)
    print("pickup latency of an idle worker (dispatch -> job start), 300 jobs")
    print(f"  p50 {p50:.2f} ms   p99 {p99:.2f} ms")

    await eval_figures(args)


async def eval_figures(args: argparse.Namespace) -> None:
    ideal = args.samples * 0.05 / 40
    command, inproc, floor = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(Path(tmp) / "bench.jsonl", args.samples)
        for _ in range(args.repeat):
            command.append(await eval_command(args.url, data, args.samples, 40))
            inproc.append(await lazy_parallel(args.url, args.samples, 40))
            floor.append(await all_queued(args.url, args.samples, 40))
    cmd_s, inproc_s, floor_s = (statistics.median(x) for x in (command, inproc, floor))
    print(
        f"eval run: {args.samples} samples x 50 ms SUT, concurrency 40, 2 worker processes "
        f"(median of {args.repeat}; ideal {ideal:.2f} s)"
    )
    print(f"  `evalharness run`, start-up to report written  {cmd_s:6.2f} s   ratio {cmd_s / ideal:.3f}")
    print(f"  the same run in-process (no start-up)          {inproc_s:6.2f} s   ratio {inproc_s / ideal:.3f}")
    print(f"  floor: the jobs queued at once, same workers   {floor_s:6.2f} s   ratio {floor_s / ideal:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
