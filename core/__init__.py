"""evalharness.core: the engine (jobs, queues, leases, limiters, eval runs, scorers).

The names most programs need are importable from here::

    from evalharness.core import job, RateLimited, PermanentError, limiter, concurrency_limiter
"""

from .jobs import JobCancelled, JobContext, JobOptions, PermanentError, RateLimited, job
from .limits import concurrency_limiter, limiter

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobOptions",
    "PermanentError",
    "RateLimited",
    "concurrency_limiter",
    "job",
    "limiter",
]
