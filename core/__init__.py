"""The engine and the domain of evalharness: jobs, queues, leases, eval runs, datasets, scorers."""

__version__ = "0.1.0"
