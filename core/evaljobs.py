"""The job that evaluates one sample of a lazy-parallel run: call the SUT, return its output.

Workers import this module at start, so ``evalharness.sample`` is always registered."""

from __future__ import annotations

import socket
from typing import Any

from .errors import SutError
from .jobs import JobContext, PermanentError, job
from .providers.usage import collecting_usage
from .sut import call_sut, load_sut_code

SAMPLE_JOB = "evalharness.sample"
DEFAULT_EVAL_QUEUE = "evals"
SUT_MISMATCH = "sut_mismatch"


@job(SAMPLE_JOB, queue=DEFAULT_EVAL_QUEUE)
async def run_sample(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Payload: ``{"sut": "module:callable", "sut_fingerprint": ..., "input": ...,
    "sample_id": ..., "index": n}``.

    The sample runs the code the producer fingerprinted: a version this process still has
    loaded, or the code on disk now, imported again if it changed since this process loaded it.
    When neither matches (another host has other files, or the source changed during the run),
    the sample fails at once as ``sut_mismatch``.  A retry (``batch retry``, ``failed retry``)
    runs the current code, whatever the fingerprint the run started with, so fixing the SUT and
    retrying works; every outcome records the fingerprint it ran with.  When the SUT called a
    provider, the outcome also has ``usage``: the tokens (and cost) its replies reported."""
    wanted = payload.get("sut_fingerprint")
    retry = ctx.job.retry_of is not None
    try:
        code = load_sut_code(payload["sut"], None if retry else wanted)
    except SutError as exc:
        raise PermanentError(str(exc), kind="sut_import") from None
    if wanted is not None and not retry and code.fingerprint != wanted:
        raise PermanentError(
            f"the worker on host {socket.gethostname()} has SUT {payload['sut']} with fingerprint "
            f"{code.fingerprint} on disk, but the run was started with {wanted}: the SUT's source "
            "differs between the producer and this worker (changed during the run, or another host "
            "has other files)",
            kind=SUT_MISMATCH,
        )
    with collecting_usage() as usage:
        output = await call_sut(code.func, payload["input"], ctx.job.key)
    result: dict[str, Any] = {"output": output, "attempts": ctx.job.attempts, "sut_fingerprint": code.fingerprint}
    if usage.calls:  # what the provider replies of this attempt reported (see core/providers/usage.py)
        result["usage"] = usage.as_dict()
    return result
