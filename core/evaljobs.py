"""The job that evaluates one sample of a lazy-parallel run: call the SUT, return its output.

Workers import this module at start, so ``evalharness.sample`` is always registered."""

from __future__ import annotations

from typing import Any

from .errors import SutError
from .jobs import JobContext, PermanentError, job
from .sut import call_sut, load_sut

SAMPLE_JOB = "evalharness.sample"
DEFAULT_EVAL_QUEUE = "evals"


@job(SAMPLE_JOB, queue=DEFAULT_EVAL_QUEUE)
async def run_sample(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Payload: ``{"sut": "module:callable", "input": ..., "sample_id": ..., "index": n}``."""
    try:
        func = load_sut(payload["sut"])
    except SutError as exc:
        raise PermanentError(str(exc), kind="sut_import") from None
    output = await call_sut(func, payload["input"], ctx.job.key)
    return {"output": output, "attempts": ctx.job.attempts}
