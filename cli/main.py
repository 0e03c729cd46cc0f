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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def _register_groups() -> None:
    from .baseline import baseline
    from .batch import batch
    from .cache import cache
    from .config import config
    from .control import continue_, pause, restart, scale, supervisors, terminate
    from .demo import demo
    from .failed import failed
    from .jobs import job, jobs
    from .judge import judge
    from .online import online
    from .queue import queue
    from .report import report_cmd
    from .run import run
    from .runs import runs
    from .scorers import scorers
    from .server import server
    from .status import metrics, status
    from .work import work

    for command in (run, report_cmd, work, demo, server):
        cli.add_command(command)
    cli.add_command(batch)
    cli.add_command(baseline)
    cli.add_command(cache)
    cli.add_command(config)
    for command in (pause, continue_, terminate, restart, scale, supervisors):
        cli.add_command(command)
    cli.add_command(failed)
    cli.add_command(runs)
    cli.add_command(judge)
    cli.add_command(online)
    cli.add_command(scorers)
    cli.add_command(queue)
    cli.add_command(job)
    cli.add_command(jobs)
    cli.add_command(status)
    cli.add_command(metrics)


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
    main()
