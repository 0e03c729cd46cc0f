"""The baseline: a worker that pays one or more Redis round trips per job, as the usual Python
job queues do (pop one, read its record, acknowledge it, count it), on the same Redis, jobs and
payloads.  It runs the same no-op job ``concurrency`` at a time on an asyncio loop."""

from __future__ import annotations

import asyncio
import sys

from evalharness.core.connection import async_client


async def main(url: str, queue_key: str, concurrency: int) -> None:
    client = async_client(url, max_connections=None)

    async def loop() -> None:
        while True:
            item = await client.blpop([queue_key], timeout=1)
            if item is None:
                continue
            job_id = item[1]
            await client.hgetall(f"{queue_key}:job:{job_id}")  # read the job
            await client.hset(f"{queue_key}:job:{job_id}", "state", "reserved")  # mark it started
            # run the no-op job, then acknowledge and count it
            await client.delete(f"{queue_key}:job:{job_id}")
            await client.hincrby(f"{queue_key}:stats", "completed", 1)

    await asyncio.gather(*(loop() for _ in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
