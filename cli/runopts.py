"""The command-line side of run profiles: flag types that also take ``none``, and the merge of
the flags a user gave with ``--profile NAME`` (the rules are in core/profiles.py)."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from evalharness.core.config import Config
from evalharness.core.profiles import NONE, OPTIONS, Resolved, is_none, resolve


class OrNone(click.ParamType):
    """``inner``'s values, or the word ``none``: clear what the profile would give."""

    def __init__(self, inner: click.ParamType, metavar: str) -> None:
        self.inner = inner
        self.metavar = metavar
        self.name = f"{inner.name}|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if is_none(value):
            return NONE
        return self.inner.convert(value, param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str | None:
        return f"{self.metavar}|none"


# run option -> the click parameter that sets it
FLAG_PARAMS = {
    "mode": "mode",
    "concurrency": "concurrency",
    "queue": "queue",
    "timeout": "timeout",
    "tries": "tries",
    "batch_timeout": "batch_timeout",
    "rate_limit": "rate_limit",
    "result_ttl": "result_ttl",
    "repetitions": "repetitions",
    "metrics": "metrics",
    "limit": "limit",
    "workers": "workers",
}
assert set(FLAG_PARAMS) == set(OPTIONS)


def resolve_run_flags(ctx: click.Context, config: Config, profile: str | None) -> Resolved:
    """The run's options from its flags, ``--profile`` and the configuration file's profiles."""
    flags: dict[str, Any] = {}
    explicit: set[str] = set()
    for option, param in FLAG_PARAMS.items():
        value = ctx.params.get(param)
        if option == "metrics":
            value = tuple(value or ())
            if len(value) == 1 and is_none(value[0]):
                value = NONE
        flags[option] = value
        source = ctx.get_parameter_source(param)
        given = source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        if given and not (option == "metrics" and value == ()):
            explicit.add(option)
    label = str(config.path) if config.path is not None else None
    return resolve(profile, config.profiles, flags, explicit, label)
