"""`evalharness run` starts on the modules it needs: the other commands load when they are used,
the provider HTTP client when a provider is called, and the program ends as soon as its work
is done, with the command's exit status."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from evalharness.cli.main import cli

PROBE = """
import json, sys
import click
from evalharness.cli.main import cli
cli.get_command(click.Context(cli), "run")  # what `evalharness run` imports
from evalharness.core.sut import load_sut
load_sut("json:dumps")  # a module:callable SUT, loaded as `run` loads it
print(json.dumps(sorted(sys.modules)))
"""

EVERY_COMMAND = {
    "baseline", "batch", "cache", "config", "continue", "demo", "failed", "job", "jobs", "judge", "metrics",
    "online", "pause", "queue", "report", "restart", "run", "runs", "scale", "scorers", "server", "status",
    "supervisors", "terminate", "work",
}  # fmt: skip


def test_the_cli_and_a_callable_sut_load_no_other_command_the_daemon_or_the_http_client() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    loaded = json.loads(done.stdout)
    heavy = [
        m
        for m in loaded
        if m.split(".")[0] in ("httpx", "textual")
        or m.startswith(
            (
                "evalharness.daemon.master",
                "evalharness.daemon.balancer",
                "evalharness.cli.control",
                "evalharness.cli.failed",
                "evalharness.cli.status",
                "evalharness.cli.online",
                "evalharness.core.providers.client",
                "evalharness.core.examples",
            )
        )
    ]
    assert heavy == []


def test_help_lists_every_command_and_each_lazy_one_runs() -> None:
    out = CliRunner().invoke(cli, ["--help"])
    assert out.exit_code == 0
    listed = {line.split()[0] for line in out.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == EVERY_COMMAND
    for name in ("batch", "continue", "runs", "jobs"):
        sub = CliRunner().invoke(cli, [name, "--help"])
        assert sub.exit_code == 0 and "Usage:" in sub.output, sub.output


def test_the_program_exits_with_the_commands_status_and_its_output_written() -> None:
    for module in ("evalharness.cli", "evalharness.cli.main"):
        version = subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60
        )
        assert version.returncode == 0 and "evalharness, version" in version.stdout
        bad = subprocess.run([sys.executable, "-m", module, "run"], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "missing argument DATASET" in bad.stderr
