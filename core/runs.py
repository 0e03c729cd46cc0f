"""The record of an eval run in Redis: what a report needs to be rebuilt from the run's outputs
later (after ``batch retry``, from another shell), and what a run that stopped would need to be
continued: the dataset and its fingerprint, the SUT, the metrics, the options and the state.

A record lives as long as the run's outputs (``--result-ttl``) under ``<prefix>:run:<id>``, with an
index ``<prefix>:runs`` (run id -> start time).  Records carry a format ``version``; fields are only
ever added.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .datasets import Dataset, Sample
from .errors import EvalHarnessError
from .keys import GlobalKeys

RECORD_VERSION = 1
# running: dispatching or collecting now (or its producer died: nothing updates it any more);
# finished: every sample has an outcome; stopped: it ended early (batch timeout, no workers, its
# batch cancelled, the workers could not import the SUT); interrupted: a signal stopped it.
RUN_STATES = ("running", "finished", "stopped", "interrupted")
_PRUNE_BATCH = 50
FIELDS = frozenset(
    {
        "version",
        "id",
        "state",
        "dataset",
        "samples",
        "sut",
        "metrics",
        "mode",
        "options",
        "queue",
        "batch",
        "sink",
        "started_at",
        "finished_at",
        "dispatched",
        "interrupted",
        "diagnostics",
        "result_ttl",
    }
)


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 of the samples (ids, inputs, expected outputs, metadata) in order: the same data
    gives the same fingerprint, whatever the file's name, format or formatting."""
    digest = hashlib.sha256()
    for s in dataset.samples:
        row = [s.id, s.input, s.expected_output, s.metadata]
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class RunRecord:
    id: str
    state: str
    dataset: Dataset
    fingerprint: str
    sut: str
    metrics: tuple[str, ...]
    mode: str
    options: dict[str, Any]
    queue: str
    started_at: float
    batch: str | None = None
    sink: str | None = None
    finished_at: float | None = None
    dispatched: int = 0  # samples 0 .. dispatched-1 were dispatched (a run dispatches in order)
    interrupted: str | None = None
    diagnostics: tuple[str, ...] = ()
    result_ttl: int = 86_400
    extra: dict[str, str] = field(default_factory=dict)  # fields of later formats, kept as they are

    def fields(self) -> dict[str, str]:
        ds = self.dataset
        return {
            **self.extra,
            "version": str(RECORD_VERSION),
            "id": self.id,
            "state": self.state,
            "dataset": json.dumps(
                {"name": ds.name, "path": str(ds.path), "samples": len(ds.samples), "fingerprint": self.fingerprint}
            ),
            "samples": json.dumps(
                [[s.id, s.input, s.expected_output, s.metadata, s.line] for s in ds.samples], ensure_ascii=False
            ),
            "sut": self.sut,
            "metrics": json.dumps(list(self.metrics)),
            "mode": self.mode,
            "options": json.dumps(self.options),
            "queue": self.queue,
            "batch": self.batch or "",
            "sink": self.sink or "",
            "started_at": repr(self.started_at),
            "finished_at": "" if self.finished_at is None else repr(self.finished_at),
            "dispatched": str(self.dispatched),
            "interrupted": self.interrupted or "",
            "diagnostics": json.dumps(list(self.diagnostics)),
            "result_ttl": str(self.result_ttl),
        }

    @classmethod
    def from_fields(cls, rec: Mapping[str, str]) -> RunRecord:
        meta = json.loads(rec["dataset"])
        samples = tuple(
            Sample(id=str(sid), input=inp, expected_output=exp, metadata=dict(md), line=int(line))
            for sid, inp, exp, md, line in json.loads(rec["samples"])
        )
        return cls(
            id=rec["id"],
            state=rec["state"],
            dataset=Dataset(path=Path(meta["path"]), name=meta["name"], samples=samples),
            fingerprint=meta.get("fingerprint", ""),
            sut=rec["sut"],
            metrics=tuple(json.loads(rec["metrics"])),
            mode=rec.get("mode", "lazy-parallel"),
            options=json.loads(rec.get("options") or "{}"),
            queue=rec["queue"],
            started_at=float(rec["started_at"]),
            batch=rec.get("batch") or None,
            sink=rec.get("sink") or None,
            finished_at=float(rec["finished_at"]) if rec.get("finished_at") else None,
            dispatched=int(rec.get("dispatched") or 0),
            interrupted=rec.get("interrupted") or None,
            diagnostics=tuple(json.loads(rec.get("diagnostics") or "[]")),
            result_ttl=int(rec.get("result_ttl") or 86_400),
            extra={k: v for k, v in rec.items() if k not in FIELDS},
        )


class RunStore:
    """Writes and reads run records under one key prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str = "eh") -> None:
        self.client = client
        self.keys = GlobalKeys(prefix)

    async def create(self, record: RunRecord) -> None:
        key = self.keys.run(record.id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=record.fields())  # type: ignore[arg-type]
            pipe.expire(key, record.result_ttl)
            pipe.zadd(self.keys.runs, {record.id: int(record.started_at * 1000)})
            await pipe.execute()
        await self._prune()

    async def update(self, run_id: str, ttl: int, **values: str | int | float | Sequence[str] | None) -> None:
        """Change some fields (``diagnostics`` as a list) and keep the record ``ttl`` more seconds."""
        fields: dict[str, str] = {}
        for name, value in values.items():
            if name == "diagnostics":
                fields[name] = json.dumps(list(value or []))  # type: ignore[arg-type]
            elif isinstance(value, float):
                fields[name] = repr(value)
            else:
                fields[name] = "" if value is None else str(value)
        key = self.keys.run(run_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(key, ttl)
            await pipe.execute()

    async def load(self, run_id: str) -> RunRecord | None:
        rec = await self.client.hgetall(self.keys.run(run_id))
        if not rec:
            return None
        try:
            return RunRecord.from_fields({str(k): str(v) for k, v in rec.items()})
        except (KeyError, ValueError, TypeError) as exc:
            raise EvalHarnessError(
                f"the record of run {run_id!r} in Redis is damaged ({type(exc).__name__}: {exc})"
            ) from None

    async def _prune(self) -> None:
        """Drop index entries whose record expired, a few of the oldest at a time."""
        ids = [str(i) for i in await self.client.zrange(self.keys.runs, 0, _PRUNE_BATCH - 1)]
        if not ids:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for rid in ids:
                pipe.exists(self.keys.run(rid))
            alive = await pipe.execute()
        gone = [rid for rid, there in zip(ids, alive, strict=True) if not there]
        if gone:
            await self.client.zrem(self.keys.runs, *gone)
