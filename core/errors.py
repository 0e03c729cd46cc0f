"""Errors a user can act on: each names what is wrong and where (file, line, key)."""

from __future__ import annotations


class EvalHarnessError(Exception):
    """Base class of the errors the command line turns into a message and an exit code."""

    exit_code = 2


class ConfigError(EvalHarnessError):
    """A configuration file, flag or environment variable is invalid."""


class DatasetError(EvalHarnessError):
    """A dataset file is missing or malformed; the message names the file and line."""


class SutError(EvalHarnessError):
    """The system under test cannot be imported or called."""


class MetricError(EvalHarnessError):
    """An unknown metric name or a bad metric option."""


class InfrastructureError(EvalHarnessError):
    """Redis or the workers are not there; the message says how to start them."""

    exit_code = 3
