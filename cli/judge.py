"""The judge step of ``evalharness run`` / ``report`` (embeddings fetched, judge calls made as jobs
before the report is scored) and ``evalharness judge calibrate``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from evalharness.core.calibration import CalibrationCase, calibrate, load_cases
from evalharness.core.config import load_config
from evalharness.core.connection import async_client
from evalharness.core.errors import EvalHarnessError
from evalharness.core.judges import JudgeStep, judge_outputs, judge_scorers, self_judging_warnings
from evalharness.core.providers.hub import metric_context, prefetch_embeddings
from evalharness.core.scorers import resolve_metrics


def needs_providers(scorers: Sequence[Any]) -> bool:
    from evalharness.core.providers.hub import PrefetchEmbeddings

    return bool(judge_scorers(scorers)) or any(
        isinstance(getattr(getattr(s, "scorer", s), "client", None), PrefetchEmbeddings) for s in scorers
    )


def prepare_scores(
    scorers: Sequence[Any],
    result: Any,
    *,
    redis_url: str | None = None,
    prefix: str = "eh",
    result_ttl: int = 86_400,
    budget: float | None = None,
) -> dict[str, Any] | None:
    """Fetch the embeddings and ask the judges the run's metrics need, so that scoring (which is
    synchronous) reads their answers.  With ``redis_url`` the judge calls are jobs.  Returns the
    report's ``judges`` entry (None when no judge ran) and adds its warnings to the run's
    diagnostics.  An interrupted run is not judged: its judge metrics report ``not-judged``."""
    if not needs_providers(scorers) or result.interrupted:
        return None
    pairs = [(o.sample, o.output) for o in result.outcomes if o.output is not None and o.error is None]

    async def go() -> JudgeStep:
        await prefetch_embeddings(scorers, pairs)
        client = async_client(redis_url) if redis_url else None
        deadline = None if budget is None else time.monotonic() + budget
        try:
            return await judge_outputs(
                scorers,
                pairs,
                client=client,
                prefix=prefix,
                run_id=result.run_id,
                result_ttl=result_ttl,
                deadline=deadline,
            )
        finally:
            if client is not None:
                await client.aclose()

    step = asyncio.run(go())
    result.diagnostics.extend(step.diagnostics)
    if not judge_scorers(scorers):
        return None
    return {"jobs": step.jobs, "in_process": step.in_process, "batch": step.batch, "usage": step.usage.as_dict()}


def warn_self_judging(scorers: Sequence[Any], sut: str | None) -> list[str]:
    warnings = self_judging_warnings(scorers, sut)
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    return warnings


# -- evalharness judge -----------------------------------------------------------------------


@click.group()
def judge() -> None:
    """Judge models: check a judge against human labels before trusting it."""


@judge.command("calibrate")
@click.argument("cases", type=click.Path(dir_okay=False))
@click.option(
    "--metric",
    default="llm-as-judge",
    show_default=True,
    metavar="NAME[:ARG=VALUE,...]",
    help="The judge metric to calibrate, with its arguments (model=..., provider=..., rubric=...).",
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=0.8,
    show_default=True,
    help="Fail (exit 1) when the judge agrees with the human labels less often than this.",
)
@click.option(
    "--pass-threshold",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="A judge score at or above this is a pass verdict.",
)
@click.option(
    "--length-bias-warn",
    type=click.FloatRange(0, 1),
    default=0.4,
    show_default=True,
    help="Warn when |Spearman(output length, score)| reaches this.",
)
@click.option(
    "--model-under-test",
    metavar="MODEL",
    help="The model being evaluated; calibrating a judge that is the same model fails.",
)
@click.option("--allow-same-model", is_flag=True, help="Allow the judge to be the --model-under-test.")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True, help="Judge calls in flight.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the result as JSON here ('-' for stdout)."
)
@click.pass_context
def judge_calibrate(
    ctx: click.Context,
    cases: str,
    metric: str,
    min_agreement: float,
    pass_threshold: float,
    length_bias_warn: float,
    model_under_test: str | None,
    allow_same_model: bool,
    concurrency: int,
    json_path: str | None,
) -> None:
    """Measure how often a judge agrees with human labels.

    CASES is a JSONL file, one case a line: {"id", "input", "expected",
    "output", "human": "pass" | "fail"} (also accepted: expected_output,
    actual, human_label / human_verdict, true/false, 1/0, and metadata).
    Each case is judged once, in this process; the judge's verdict is pass
    when its score is at least --pass-threshold.

    Prints the agreement (matches / cases), the confusion table (true pass,
    true fail, false pass, false fail: "false pass" = the judge passed what a
    human failed), Cohen's kappa, and the length bias: Spearman's rank
    correlation between the output's length and the judge's score.  A case
    the judge could not score counts against agreement and is listed.

    \b
    Exit status:
      0    agreement >= --min-agreement (warnings may be printed)
      1    agreement below it, or the judge is the --model-under-test
      2    bad input (file, metric, options)
      3    provider or configuration unavailable
    """
    config = load_config(ctx.find_root().obj.get("config"))
    scorers = resolve_metrics([metric], config=config.metrics, context=metric_context(config.providers))
    judges = judge_scorers(scorers)
    if not judges:
        raise EvalHarnessError(f"--metric {metric!r} is not a judge metric (llm-as-judge, refusal-quality)")
    scorer = judges[0]
    loaded: list[CalibrationCase] = load_cases(Path(cases))
    pairs = [(c.sample, c.output) for c in loaded]
    asyncio.run(judge_outputs([scorer], pairs, concurrency=concurrency))
    outcome = calibrate(loaded, scorer, pass_threshold=pass_threshold)
    same = model_under_test is not None and model_under_test == scorer.model
    failed_same = same and not allow_same_model
    passed = outcome.agreement >= min_agreement and not failed_same
    warnings = []
    if abs(outcome.length_bias) >= length_bias_warn:
        warnings.append(
            f"length bias {outcome.length_bias:+.3f}: the judge's scores follow the output's length (|rho| >= "
            f"{length_bias_warn:g})"
        )
    if same:
        warnings.append(f"the judge model {scorer.model!r} is the model under test")
    doc = {
        "schema_version": "evalharness.calibration.v1",
        "metric": metric,
        "judge_model": scorer.model,
        "cases": str(cases),
        **outcome.to_json(),
        "min_agreement": min_agreement,
        "pass_threshold": pass_threshold,
        "model_under_test": model_under_test,
        "warnings": warnings,
        "passed": passed,
    }
    if json_path == "-":
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        console = Console()
        console.print(
            f"judge {scorer.model} ({metric}) on {outcome.n} case(s): agreement {outcome.agreement:.3f}"
            f" (min {min_agreement:g}), Cohen's kappa {_num(outcome.kappa)}, length bias {outcome.length_bias:+.3f}",
            markup=False,
        )
        table = Table(title="confusion (rows: human, columns: judge)", title_justify="left")
        for header in ("", "judge pass", "judge fail", "no verdict"):
            table.add_column(header)
        c = outcome.confusion
        table.add_row("human pass", str(c["true_pass"]), str(c["false_fail"]), str(c["unscored_pass"]))
        table.add_row("human fail", str(c["false_pass"]), str(c["true_fail"]), str(c["unscored_fail"]))
        console.print(table)
        for row in outcome.errors[:20]:
            console.print(f"  {row['id']}: {row['kind']}: {row['message']}", markup=False, highlight=False)
        if json_path:
            Path(json_path).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
            click.echo(f"calibration written to {json_path}", err=True)
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    if failed_same:
        click.echo("error: the judge is the model under test (--allow-same-model to accept it)", err=True)
    raise SystemExit(0 if passed else 1)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
