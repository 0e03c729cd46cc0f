"""Metric specs and arguments (command line and config file), plug-ins from the
``evalharness.metrics`` entry-point group, and ``evalharness scorers list`` / ``run`` using them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from support.procs import Processes

from evalharness.core.config import load_config
from evalharness.core.datasets import Sample
from evalharness.core.errors import ConfigError, MetricError
from evalharness.core.scorers import (
    METRIC_NAMES,
    MetricSpec,
    ResolvedScorer,
    load_plugins,
    metric_definitions,
    parse_metric_specs,
    plugin_errors,
    resolve_metrics,
)


def sample(expected: Any, **metadata: Any) -> Sample:
    return Sample(id="s", input="q", expected_output=expected, metadata=metadata, line=1)


def metric_error(*specs: str, config: dict[str, dict[str, Any]] | None = None) -> str:
    with pytest.raises(MetricError) as info:
        resolve_metrics(list(specs), config=config)
    assert info.value.exit_code == 2
    return str(info.value)


# --- specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "specs"),
    [
        (["exact-match"], [MetricSpec("exact-match")]),
        (["retrieval-ndcg-at-k:k=10"], [MetricSpec("retrieval-ndcg-at-k", (("k", "10"),))]),
        (
            ["answer-containment-at-k:k=3,case_sensitive=true"],
            [MetricSpec("answer-containment-at-k", (("k", "3"), ("case_sensitive", "true")))],
        ),
        (
            ["exact-match, retrieval-hit-at-k:k=1,k2:x=1, contains"],
            [
                MetricSpec("exact-match"),
                MetricSpec("retrieval-hit-at-k", (("k", "1"),)),
                MetricSpec("k2", (("x", "1"),)),
                MetricSpec("contains"),
            ],
        ),
        (["ordinal-distance:scale=a|b|c"], [MetricSpec("ordinal-distance", (("scale", "a|b|c"),))]),
        # a ':' after the '=' belongs to the value
        (
            ["llm-as-judge:prompt_template=Rate: {actual}"],
            [MetricSpec("llm-as-judge", (("prompt_template", "Rate: {actual}"),))],
        ),
        (
            ["rouge-l", "rouge-l", "rouge-l:max_tokens=5", "rouge-l:max_tokens=5"],
            [MetricSpec("rouge-l"), MetricSpec("rouge-l", (("max_tokens", "5"),))],
        ),
    ],
)
def test_parse_metric_specs(entries: list[str], specs: list[MetricSpec]) -> None:
    assert parse_metric_specs(entries) == specs


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ("k=3", "argument 'k=3' has no metric before it (write NAME:k=3)"),
        (":k=3", "has no metric name before ':'"),
        ("retrieval-ndcg-at-k:", "nothing after ':'"),
        ("retrieval-ndcg-at-k:k", "argument 'k' needs a value (write k=VALUE)"),
        ("retrieval-ndcg-at-k:k=1,k=2", "argument 'k' is given twice"),
        ("retrieval-ndcg-at-k:=1", "has no name"),
    ],
)
def test_malformed_specs(entry: str, needle: str) -> None:
    assert needle in metric_error(entry)


def test_report_names_are_the_specs_and_arguments_are_effective_values() -> None:
    scorers = resolve_metrics(["retrieval-ndcg-at-k:k=10", "retrieval-ndcg-at-k", "exact-match"])
    assert [s.name for s in scorers] == ["retrieval-ndcg-at-k:k=10", "retrieval-ndcg-at-k", "exact-match"]
    first = scorers[0]
    assert isinstance(first, ResolvedScorer)
    assert (first.metric, dict(first.arguments)) == ("retrieval-ndcg-at-k", {"k": 10})
    assert dict(scorers[1].arguments) == {"k": 5}
    out = json.dumps([f"d{i}" for i in range(10)])
    s = sample(["d9"])
    assert scorers[0].score(out, ["d9"], s) > 0.0 == scorers[1].score(out, ["d9"], s)


def test_argument_values_are_checked_before_anything_runs() -> None:
    assert metric_error("retrieval-ndcg-at-k:k=0") == (
        "metric 'retrieval-ndcg-at-k' argument 'k': expected a positive integer, got '0'"
    )
    for bad in ("ten", "+5", "5.0", " 5x", ""):
        assert "expected a positive integer" in metric_error(f"retrieval-hit-at-k:k={bad}")
    assert "expected true or false, got 'maybe'" in metric_error("answer-containment-at-k:case_sensitive=maybe")
    assert "a list of distinct non-empty strings, got 'a|a'" in metric_error("ordinal-distance:scale=a|a")
    assert "got 'a||b'" in metric_error("ordinal-distance:scale=a||b")


def test_unknown_arguments_name_the_metric_and_suggest() -> None:
    assert metric_error("retrieval-ndcg-at-k:kk=3") == (
        "metric 'retrieval-ndcg-at-k' has no argument 'kk' (did you mean 'k'?); its arguments: k"
    )
    assert metric_error("exact-match:k=3") == "metric 'exact-match' takes no arguments, got 'k'"
    assert (
        metric_error("retrieval-mrr:k=3") == "metric 'retrieval-mrr' takes no arguments, got 'k'"
    )  # MRR reads the whole list


def test_a_bad_argument_in_a_later_metric_stops_all() -> None:
    assert "'rouge-l' argument 'max_tokens'" in metric_error("exact-match", "rouge-l:max_tokens=0")


def test_unknown_names_are_still_reported_together_first() -> None:
    message = metric_error("ndcg:k=3", "retrieval-hit-at-k:k=0", "bleu")
    assert message.startswith("unknown metrics 'ndcg', 'bleu'; known metrics: ")


# --- config file -------------------------------------------------------------------------------


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "evalharness.toml"
    path.write_text(text)
    return path


def test_config_tables_give_metric_defaults_that_the_command_line_overrides(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
[metrics.retrieval-ndcg-at-k]
k = 3

[metrics.ordinal-distance]
scale = ["bad", "ok", "good"]

[metrics.answer-containment-at-k]
case_sensitive = true
""",
    )
    config = load_config(path)
    assert config.metrics == {
        "retrieval-ndcg-at-k": {"k": 3},
        "ordinal-distance": {"scale": ("bad", "ok", "good")},
        "answer-containment-at-k": {"case_sensitive": True},
    }
    ndcg, ndcg10, ordinal = resolve_metrics(
        ["retrieval-ndcg-at-k", "retrieval-ndcg-at-k:k=10", "ordinal-distance"], config=config.metrics
    )
    assert isinstance(ndcg, ResolvedScorer) and isinstance(ndcg10, ResolvedScorer)
    assert (ndcg.arguments["k"], ndcg10.arguments["k"]) == (3, 10)
    assert ordinal.score("ok", "good", sample("good")) == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[metrics.retrieval-ndcg-at-k]\nk = 0\n",
            "table [metrics.retrieval-ndcg-at-k] key 'k': expected a positive integer, got 0",
        ),
        (
            "[metrics.retrieval-ndcg-at-k]\nk = '5'\n",
            "table [metrics.retrieval-ndcg-at-k] key 'k': expected a positive integer, got '5'",
        ),
        (
            "[metrics.retrieval-ndcg-at-k]\nkk = 5\n",
            "table [metrics.retrieval-ndcg-at-k] key 'kk': "
            "metric 'retrieval-ndcg-at-k' has no argument 'kk' (did you mean 'k'?)",
        ),
        ("[metrics.ndcg]\nk = 5\n", "table [metrics] key 'ndcg': unknown metric"),
        ("[metrics]\nrouge-l = 3\n", "table [metrics] key 'rouge-l': expected a table of the metric's arguments"),
        ("metrics = 3\n", "key 'metrics': expected a table of [metrics.NAME] tables"),
        (
            "[metrics.ordinal-distance]\nscale = ['a', 'a']\n",
            "key 'scale': expected a list of distinct non-empty strings",
        ),
        (
            "[metrics.answer-containment-at-k]\ncase_sensitive = 1\n",
            "key 'case_sensitive': expected true or false, got 1",
        ),
    ],
)
def test_config_errors_name_file_table_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


# --- plug-ins ----------------------------------------------------------------------------------

ENTRY_POINTS = """\
[evalharness.metrics]
length-ratio = support.metrics_plugin:length_ratio
several = support.metrics_plugin:several
broken = support.metrics_plugin:broken
clash = support.metrics_plugin:CLASH
missing = support.no_such_module:thing
"""


def make_plugin_dir(root: Path) -> Path:
    """A ``*.dist-info`` on a directory put on sys.path: importlib.metadata finds its entry points."""
    info = root / "eh_test_metrics-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: eh-test-metrics\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = make_plugin_dir(tmp_path / "plugins")
    monkeypatch.syspath_prepend(str(root))
    load_plugins()
    yield root
    monkeypatch.undo()
    load_plugins()


def test_plugins_are_loaded_from_the_entry_point_group(plugin_dir: Path) -> None:
    by_name = {d.name: d for d in metric_definitions()}
    assert by_name["length-ratio"].source == "plug-in eh-test-metrics"
    assert by_name["length-ratio"].summary == "Output length over a target length, capped at 1."
    assert by_name["always-half"].kind == "custom"
    assert by_name["exact-match"].source == "built-in"  # a plug-in cannot replace a built-in
    errors = plugin_errors()
    assert len(errors) == 3
    assert any("'broken'" in e and "RuntimeError: the plug-in has a bug" in e for e in errors)
    assert any("'clash'" in e and "'exact-match', which is already taken" in e for e in errors)
    assert any("'missing'" in e and "ModuleNotFoundError" in e for e in errors)

    ratio, half = resolve_metrics(["length-ratio:target=4", "always-half"])
    assert ratio.score("ab", "", sample("")) == 0.5
    assert half.score("anything", "", sample("")) == 0.5
    assert "expected a positive integer" in metric_error("length-ratio:target=0")


def test_an_unknown_metric_mentions_plugins_that_failed(plugin_dir: Path) -> None:
    message = metric_error("brokn")
    assert "3 metric plug-in(s) failed to load" in message
    assert "RuntimeError: the plug-in has a bug" in message


def test_without_the_plugin_its_metrics_are_gone(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    load_plugins()
    assert "length-ratio" not in {d.name for d in metric_definitions()}
    assert plugin_errors() == ()
    assert {d.name for d in metric_definitions()} == set(METRIC_NAMES)


# --- the command line --------------------------------------------------------------------------


def plugin_env(procs: Processes, root: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(root), procs.env["PYTHONPATH"]])}


def test_scorers_list(procs: Processes, tmp_path: Path) -> None:
    root = make_plugin_dir(tmp_path / "plugins")
    done = procs.cli("scorers", "list", "--json", env=plugin_env(procs, root))
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    by_name = {m["name"]: m for m in listing["metrics"]}
    assert set(METRIC_NAMES) | {"length-ratio", "always-half"} == set(by_name)
    assert by_name["retrieval-ndcg-at-k"] == {
        "name": "retrieval-ndcg-at-k",
        "kind": "retrieval",
        "summary": "nDCG at k with linear gains",
        "arguments": [
            {
                "name": "k",
                "type": "int",
                "default": 5,
                "accepts": "a positive integer",
                "help": "cut-off rank, used when a sample has no metadata.k",
            }
        ],
        "provider": None,
        "source": "built-in",
    }
    assert by_name["cosine-embedding"]["provider"] == "embeddings"
    assert by_name["llm-as-judge"]["provider"] == "chat"
    assert by_name["length-ratio"]["source"] == "plug-in eh-test-metrics"
    assert len(listing["plugin_errors"]) == 3

    table = procs.cli("scorers", "list", env={**plugin_env(procs, root), "COLUMNS": "160"})
    assert table.returncode == 0
    assert "retrieval-ndcg-at-k" in table.stdout and "k=5" in table.stdout
    assert "length-ratio" in table.stdout and "plug-in eh-test-metrics" in table.stdout
    assert table.stderr.count("warning: metric plug-in") == 3


def test_run_with_metric_arguments_plugins_and_config(procs: Processes, tmp_path: Path) -> None:
    root = make_plugin_dir(tmp_path / "plugins")
    data = tmp_path / "rag.jsonl"
    rows = [
        {"id": "fr", "input": "capital of France", "expected_output": ["d3", "d9"]},
        {"id": "it", "input": "capital of Italy", "expected_output": {"d5": 2, "d4": 0}, "metadata": {"k": 1}},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "evalharness.toml").write_text("[metrics.retrieval-recall-at-k]\nk = 2\n")
    done = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.metrics_plugin:retrieve",
        "--batch",
        "serial",
        "--json",
        "r.json",
        "--metric",
        "retrieval-ndcg-at-k:k=5,retrieval-mrr",
        "--metric",
        "retrieval-recall-at-k",
        "--metric",
        "length-ratio:target=100",
        env=plugin_env(procs, root),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["metrics"]) == [
        "retrieval-ndcg-at-k:k=5",
        "retrieval-mrr",
        "retrieval-recall-at-k",
        "length-ratio:target=100",
    ]
    fr, it = report["samples"]
    assert fr["scores"]["retrieval-mrr"] == 0.5
    assert fr["scores"]["retrieval-recall-at-k"] == 0.5  # k = 2 from the config file
    assert it["scores"]["retrieval-recall-at-k"] == 0.0  # metadata.k = 1 wins: d4 has gain 0
    assert it["scores"]["retrieval-mrr"] == 0.5  # duplicates removed: d4, d5
    assert report["metrics"]["retrieval-ndcg-at-k:k=5"]["metric"] == "retrieval-ndcg-at-k"
    assert report["metrics"]["retrieval-ndcg-at-k:k=5"]["arguments"] == {"k": 5}
    assert report["metrics"]["retrieval-recall-at-k"]["arguments"] == {"k": 2}
    assert report["metrics"]["length-ratio:target=100"]["arguments"] == {"target": 100}
    assert report["metrics"]["retrieval-mrr"]["pass_rate_ci"]["confidence"] == 0.95


@pytest.mark.parametrize(
    ("metric", "needle"),
    [
        (
            "retrieval-ndcg-at-k:k=0",
            "error: metric 'retrieval-ndcg-at-k' argument 'k': expected a positive integer, got '0'",
        ),
        ("retrieval-ndcg-at-k:depth=3", "error: metric 'retrieval-ndcg-at-k' has no argument 'depth'"),
        (
            "llm-as-judge",
            "error: metric 'llm-as-judge' needs a judge model provider (chat completions) and none is configured",
        ),
        ("cosine-embedding", "error: metric 'cosine-embedding' needs an embeddings provider and none is configured"),
    ],
)
def test_run_refuses_bad_metrics_before_dispatching(
    procs: Processes, tmp_path: Path, redis_url: str, metric: str, needle: str
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "input": "q", "expected_output": ["d1"]}\n')
    done = procs.cli("run", str(data), "--sut", "support.metrics_plugin:retrieve", "--metric", metric)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert redis.Redis.from_url(redis_url).dbsize() == 0  # nothing was queued


def test_run_refuses_a_bad_metrics_table_in_the_config_file(procs: Processes, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "input": "q", "expected_output": ["d1"]}\n')
    (tmp_path / "evalharness.toml").write_text("[metrics.retrieval-hit-at-k]\nk = -1\n")
    done = procs.cli(
        "run", str(data), "--sut", "support.metrics_plugin:retrieve", "--metric", "exact-match", "--batch", "serial"
    )
    assert done.returncode == 2
    assert (
        "evalharness.toml: table [metrics.retrieval-hit-at-k] key 'k': expected a positive integer, got -1"
        in done.stderr
    )


def test_the_report_records_each_metrics_arguments_as_json() -> None:
    from evalharness.core.datasets import Dataset
    from evalharness.core.report import SampleOutcome, build_report

    row = sample("b")
    data = Dataset(path=Path("d.jsonl"), name="d", samples=(row,))
    report = build_report(
        run_id="r",
        dataset=data,
        sut="m:f",
        mode="serial",
        options={},
        started_at=0.0,
        finished_at=1.0,
        outcomes=[SampleOutcome(0, row, "a", None, 1)],
        scorers=resolve_metrics(["ordinal-distance:scale=a|b|c", "rouge-l"]),
    )
    entry = report["metrics"]["ordinal-distance:scale=a|b|c"]
    assert (entry["metric"], entry["arguments"], entry["mean"]) == ("ordinal-distance", {"scale": ["a", "b", "c"]}, 0.5)
    assert report["metrics"]["rouge-l"]["arguments"] == {"max_tokens": 1024}
    assert json.loads(json.dumps(report, allow_nan=False)) == report
