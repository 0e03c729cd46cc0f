"""The ``evalharness`` command: the root group, its connection options, and the command groups
it gathers (a module of this package each)."""

from __future__ import annotations

import click

from evalharness.core.config import ENV_CONFIG, ENV_PREFIX, ENV_REDIS_URL
from evalharness.core.errors import EvalHarnessError
from evalharness.daemon.common import (
    exit_with_error,
    setup_logging,
)

from .lazygroup import LazyGroup


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--redis-url",
    envvar=ENV_REDIS_URL,
    help=f"Redis URL (redis://, rediss://, unix://). Env {ENV_REDIS_URL}; default: the embedded server.",
)
@click.option(
    "--prefix",
    envvar=ENV_PREFIX,
    help=f"Key prefix shared by producers, workers and consoles (default eh). Env {ENV_PREFIX}.",
)
@click.option(
    "--config",
    "config",
    envvar=ENV_CONFIG,
    type=click.Path(dir_okay=False),
    help=f"Config file (TOML). Env {ENV_CONFIG}; default ./evalharness.toml when present.",
)
@click.option(
    "--log-level",
    envvar="EVALHARNESS_LOG_LEVEL",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Env EVALHARNESS_LOG_LEVEL.",
)
@click.version_option(package_name="evalharness")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, prefix: str | None, config: str | None, log_level: str) -> None:
    """Run LLM/RAG evaluations as queued work on Redis.

    \b
    Quick start:
      evalharness demo                        # everything, with the bundled example
      evalharnessd --queue evals=2 &          # workers, supervised
      evalharness run data.jsonl --sut mybot:answer --metric exact-match
    """
    setup_logging(log_level)
    ctx.obj = {"redis_url": redis_url, "prefix": prefix, "config": config}


COMMANDS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("run", (("run", "run"),)),
    ("report", (("report", "report_cmd"),)),
    ("work", (("work", "work"),)),
    ("demo", (("demo", "demo"),)),
    ("server", (("server", "server"),)),
    ("baseline", (("baseline", "baseline"),)),
    ("batch", (("batch", "batch"),)),
    ("cache", (("cache", "cache"),)),
    ("config", (("config", "config"),)),
    (
        "control",
        (
            ("pause", "pause"),
            ("continue", "continue_"),
            ("terminate", "terminate"),
            ("restart", "restart"),
            ("scale", "scale"),
            ("supervisors", "supervisors"),
        ),
    ),
    ("failed", (("failed", "failed"),)),
    ("runs", (("runs", "runs"),)),
    ("judge", (("judge", "judge"),)),
    ("online", (("online", "online"),)),
    ("scorers", (("scorers", "scorers"),)),
    ("queue", (("queue", "queue"),)),
    ("jobs", (("job", "job"), ("jobs", "jobs"))),
    ("status", (("metrics", "metrics"), ("status", "status"))),
)
"""module of this package -> (command name, attribute) of the commands it holds."""


def _register_groups() -> None:
    # imported when used: `run` does not load the modules of the other commands
    for module, commands in COMMANDS:
        for name, attr in commands:
            cli.add_lazy(name, f"evalharness.cli.{module}:{attr}")  # type: ignore[attr-defined]


_register_groups()


def main() -> None:
    import redis.exceptions

    try:
        cli(prog_name="evalharness")
    except EvalHarnessError as exc:
        exit_with_error(exc)
    except redis.exceptions.ConnectionError as exc:
        click.echo(f"error: cannot reach Redis: {exc}", err=True)
        raise SystemExit(3) from None
    except redis.exceptions.RedisError as exc:
        click.echo(f"error: Redis refused the command: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(3) from None


if __name__ == "__main__":
    from .entry import main as entry

    entry(main)
