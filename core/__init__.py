"""evalharness.core: the engine (jobs, queues, leases, limiters, eval runs, scorers).

The names most programs need are importable from here::

    from evalharness.core import job, RateLimited, PermanentError, limiter, concurrency_limiter,
        adaptive_limiter
"""

from .jobs import JobCancelled, JobContext, JobOptions, PermanentError, RateLimited, job
from .limits import adaptive_limiter, concurrency_limiter, limiter

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobOptions",
    "PermanentError",
    "RateLimited",
    "adaptive_limiter",
    "concurrency_limiter",
    "job",
    "limiter",
]
