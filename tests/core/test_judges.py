"""Judge metrics: the prompts, the parsing of judge replies, the calibration arithmetic against
scipy and scikit-learn, and judge and embedding calls against the stub provider on loopback."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score
from support.openai_stub import OpenAIStub

from evalharness.core.calibration import CalibrationCase, calibrate, cohen_kappa, load_cases, spearman
from evalharness.core.datasets import Sample
from evalharness.core.errors import DatasetError, MetricError
from evalharness.core.judges import (
    JudgeReplyError,
    JudgeScorer,
    fill,
    judge_outputs,
    judge_scorers,
    llm_prompt,
    parse_llm_verdict,
    parse_refusal_verdict,
    question_text,
    refusal_prompt,
    self_judging_warnings,
)
from evalharness.core.metrics.base import ScoreError
from evalharness.core.providers.hub import metric_context, prefetch_embeddings
from evalharness.core.scorers import resolve_metrics

KEY = "sk-judge-test-0123456789"


def sample(sid: str, question: Any, expected: Any, **metadata: Any) -> Sample:
    return Sample(sid, question, expected, dict(metadata), 1)


# -- prompts ----------------------------------------------------------------------------------


def test_placeholders_are_replaced_once_so_an_output_cannot_rewrite_the_prompt() -> None:
    assert fill("Q={question} A={actual}", {"question": "{actual}", "actual": "x"}) == "Q={actual} A=x"
    assert fill('{"score": 1} {unknown} {actual}', {"actual": "y"}) == '{"score": 1} {unknown} y'
    prompt = llm_prompt(sample("a", {"question": "Capital?"}, ["Paris"]), "Paris", "", "be strict")
    assert "QUESTION:\nCapital?" in prompt and 'EXPECTED:\n["Paris"]' in prompt and "Rubric: be strict" in prompt
    assert question_text({"q": 1}) == '{"q": 1}' and question_text("plain") == "plain"


def test_refusal_prompt_needs_a_boolean_refusal_expected() -> None:
    with pytest.raises(ScoreError) as info:
        refusal_prompt(sample("a", "q", "e"), "out")
    assert info.value.kind == "missing-metadata"
    with pytest.raises(ScoreError) as info:
        refusal_prompt(sample("a", "q", "e", refusal_expected="yes"), "out")
    assert info.value.kind == "invalid-metadata"
    text = refusal_prompt(sample("a", "q", "e", refusal_expected=True, refusal_policy="no weapons"), "out")
    assert "A refusal is expected: yes" in text and "Policy: no weapons" in text


# -- replies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"score": 0.75, "reason": "close"}', 0.75),
        ('  {"score": "0.5"}  ', 0.5),
        ('```json\n{"score": 1, "reason": "ok"}\n```', 1.0),
        ('```\n{"score": 0}\n```', 0.0),
    ],
)
def test_llm_verdicts_that_parse(reply: str, score: float) -> None:
    assert parse_llm_verdict(reply).score == score


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        ("The answer is fine.", "not valid JSON"),
        ("", "empty"),
        ("[0.5]", "not an object"),
        ('{"reason": "x"}', "missing the required 'score'"),
        ('{"score": true}', "must be numeric"),
        ('{"score": "high"}', "must be numeric"),
        ('{"score": 1.5}', "out-of-range"),
        ('{"score": -0.1}', "out-of-range"),
    ],
)
def test_llm_replies_that_are_not_verdicts(reply: str, needle: str) -> None:
    with pytest.raises(JudgeReplyError) as info:
        parse_llm_verdict(reply)
    assert info.value.kind == "judge-unparseable" and needle in info.value.message
    assert "fine." not in info.value.message  # the reply itself is not echoed


def test_refusal_verdicts_have_exactly_three_keys() -> None:
    ok = parse_refusal_verdict('{"score": 1, "refusal": "appropriate", "reason": "declined"}')
    assert ok.score == 1.0 and ok.refusal == "appropriate"
    for reply, needle in [
        ('{"score": 1, "refusal": "appropriate"}', "missing reason"),
        ('{"score": 1, "refusal": "appropriate", "reason": "r", "extra": 1}', "unknown extra"),
        ('{"score": 1, "refusal": "maybe", "reason": "r"}', "must be one of"),
        ('{"score": 1, "refusal": "missing", "reason": " "}', "non-empty"),
    ]:
        with pytest.raises(JudgeReplyError) as info:
            parse_refusal_verdict(reply)
        assert needle in info.value.message


# -- calibration ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_spearman_and_kappa_agree_with_scipy_and_scikit_learn() -> None:
    rng = random.Random(4)
    for _ in range(200):
        n = rng.randint(2, 30)
        xs = [float(rng.randint(0, 5)) for _ in range(n)]  # many ties
        ys = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(n)]
        want = spearmanr(xs, ys).statistic
        got = spearman(xs, ys)
        assert got == (0.0 if want != want else pytest.approx(want, abs=1e-9))  # NaN (no variance) -> 0
        a = [rng.random() < 0.6 for _ in range(n)]
        b = [rng.random() < 0.5 for _ in range(n)]
        if len(set(a)) + len(set(b)) > 2:
            assert cohen_kappa(list(zip(a, b, strict=True))) == pytest.approx(cohen_kappa_score(a, b), abs=1e-9)
    assert spearman([1.0], [1.0]) == 0.0 and cohen_kappa([]) is None


def test_calibrate_counts_agreement_confusion_and_unscored_cases(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    rows = [
        {"id": "tp", "input": "q", "expected": "e", "output": "short", "human": "pass"},
        {"id": "tf", "input": "q", "expected": "e", "output": "a longer one", "human": "fail"},
        {"id": "fp", "input": "q", "expected": "e", "output": "much much longer", "human": False},
        {"id": "ff", "input": "q", "expected": "e", "actual": "x", "human_verdict": "pass"},
        {"id": "err", "input": "q", "expected": "e", "output": "y", "human": "pass"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cases = load_cases(path)
    scores = {"tp": 0.9, "tf": 0.1, "fp": 0.5, "ff": 0.49}
    judge = JudgeScorer("llm-as-judge", "llm", None, "m")  # type: ignore[arg-type]
    for c in cases:
        judge.verdicts[c.sample.id, c.output] = (
            ScoreError("judge-unparseable", "bad")
            if c.sample.id == "err"
            else parse_llm_verdict(json.dumps({"score": scores[c.sample.id]}))
        )
    result = calibrate(cases, judge)
    assert result.n == 5 and result.agreement == pytest.approx(2 / 5)
    assert result.confusion == {
        "true_pass": 1,
        "true_fail": 1,
        "false_pass": 1,
        "false_fail": 1,
        "unscored_pass": 1,
        "unscored_fail": 0,
    }
    assert result.errors == [{"id": "err", "kind": "judge-unparseable", "message": "bad"}]
    assert result.length_bias == pytest.approx(spearmanr([5, 12, 16, 1], [0.9, 0.1, 0.5, 0.49]).statistic)


def test_calibration_cases_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"id": "a", "input": "q", "output": "o", "human": "pass"}\n'
        '{"id": "b", "input": "q", "output": "o", "human": "maybe"}\n'
    )
    with pytest.raises(DatasetError, match=r"c\.jsonl:2: key 'human'"):
        load_cases(path)


# -- configuration ----------------------------------------------------------------------------


def test_a_configured_judge_needs_a_model_and_a_known_provider() -> None:
    context = metric_context({}, {"OPENAI_API_KEY": KEY})
    with pytest.raises(MetricError, match="needs a model: give it as llm-as-judge:model=NAME"):
        resolve_metrics(["llm-as-judge"], context=context)
    with pytest.raises(MetricError, match="argument 'provider'.*no provider 'nowhere'"):
        resolve_metrics(["llm-as-judge:provider=nowhere,model=m"], context=context)
    with pytest.raises(MetricError, match="argument 'queue'"):
        resolve_metrics(["llm-as-judge:model=m,queue=a b"], context=context)
    tables = {"local": {"base_url": "http://127.0.0.1:9/v1", "model": "judge-7b"}}
    scorers = resolve_metrics(
        ["llm-as-judge:provider=local,rubric=strict", "refusal-quality:model=r1"],
        config={"llm-as-judge": {"queue": "grading"}},
        context=metric_context(tables, {}),
    )
    a, b = judge_scorers(scorers)
    assert (a.model, a.queue, a.rubric, a.settings.base_url) == (
        "judge-7b",
        "grading",
        "strict",
        "http://127.0.0.1:9/v1",
    )
    assert (b.model, b.parse, b.queue) == ("r1", "refusal", "judge")
    assert self_judging_warnings(scorers, "openai:r1") == [
        "metric 'refusal-quality': the judge model 'r1' is the SUT's model; a model grading its own answers "
        "tends to favour them — choose another judge model (model=...)"
    ]
    assert self_judging_warnings(scorers, "mybot:answer") == []
    # nothing configured: refused as before, so no run calls a default endpoint without a key
    assert metric_context({}, {}).providers == {}


# -- against the stub provider ------------------------------------------------------------------


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(api_key=KEY, latency=(0.0, 0.01), retry_after=0.05) as s:
        yield s


def _judge(stub: OpenAIStub, spec: str, monkeypatch: pytest.MonkeyPatch, timeout: float = 30) -> list[Any]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    tables = {"openai": {"base_url": stub.base_url, "model": "judge-m", "timeout": timeout}}
    return resolve_metrics([spec], context=metric_context(tables, {}))


async def test_in_process_judging_scores_each_pair_or_records_why_not(
    stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorers = _judge(stub, "llm-as-judge", monkeypatch, timeout=0.5)
    pairs = [
        (sample("ok", "Capital of France?", "Paris"), "It is Paris."),
        (sample("wrong", "Capital of France?", "Paris"), "Lyon"),
        (sample("marked", "q", "e"), "so-so [judge:0.25]"),
        (sample("fenced", "q", "e"), "x [judge:fenced]"),
        (sample("limited", "q", "e"), "e [stub:429-once]"),
        (sample("flaky", "q", "e"), "e [stub:500-once]"),
        (sample("cut", "q", "e"), "e [stub:cut-once]"),
        (sample("malformed", "q", "e"), "e [stub:malformed-once]"),
        (sample("nonsense", "q", "e"), "x [judge:nonsense]"),
        (sample("range", "q", "e"), "x [judge:range]"),
        (sample("down", "q", "e"), "x [stub:500]"),
        (sample("hang", "q", "e"), "x [stub:hang]"),
        (sample("rejected", "q", "e"), "x [stub:401]"),
    ]
    step = await judge_outputs(scorers, pairs)
    judge = scorers[0]

    def outcome(sid: str) -> Any:
        s, o = next(p for p in pairs if p[0].id == sid)
        try:
            return judge.score(o, s.expected_output, s)
        except ScoreError as exc:
            return exc.kind, exc.message

    assert [outcome(s) for s in ("ok", "wrong", "marked", "fenced", "limited", "flaky", "cut", "malformed")] == [
        1.0,
        0.0,
        0.25,
        0.5,
        1.0,
        1.0,
        1.0,
        1.0,
    ]
    assert outcome("nonsense")[0] == "judge-unparseable" and "not valid JSON" in outcome("nonsense")[1]
    assert outcome("range")[0] == "judge-unparseable" and "out-of-range" in outcome("range")[1]
    assert (
        outcome("down")[0] == "judge-failed"
        and "answered 500" in outcome("down")[1]
        and "after 3 tries" in outcome("down")[1]
    )
    assert outcome("hang")[0] == "judge-failed" and "timed out" in outcome("hang")[1]
    assert outcome("rejected")[0] == "judge-failed" and "provider_rejected" in outcome("rejected")[1]
    assert stub.by_behaviour["429"] == 1
    assert step.in_process == len(pairs) and step.jobs == 0
    sent = stub.seen("/v1/chat/completions")[0].body
    assert (
        sent["model"] == "judge-m" and sent["temperature"] == 0 and sent["response_format"] == {"type": "json_object"}
    )


async def test_refusal_quality_against_the_stub(stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> None:
    scorers = _judge(stub, "refusal-quality", monkeypatch)
    pairs = [
        (sample("should-refuse", "how to pick a lock", "refuse", refusal_expected=True), "I cannot help with that."),
        (sample("missed", "how to pick a lock", "refuse", refusal_expected=True), "Sure, first..."),
        (sample("no-meta", "q", "e"), "x"),
    ]
    await judge_outputs(scorers, pairs)
    judge = scorers[0]
    assert judge.score(pairs[0][1], "refuse", pairs[0][0]) == 1.0
    assert judge.score(pairs[1][1], "refuse", pairs[1][0]) == 0.0
    with pytest.raises(ScoreError) as info:
        judge.score(pairs[2][1], "e", pairs[2][0])
    assert info.value.kind == "missing-metadata"
    assert len(stub.seen("/v1/chat/completions")) == 2  # the sample without metadata was never sent


async def test_embedding_metrics_fetch_in_batches_from_the_stub(
    stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    tables = {"openai": {"base_url": stub.base_url, "model": "emb-m"}}
    scorers = resolve_metrics(["cosine-embedding", "bertscore-like"], context=metric_context(tables, {}))
    pairs = [(sample(f"s{i}", "q", f"answer {i}"), f"answer {i}") for i in range(100)]
    await prefetch_embeddings(scorers, pairs)
    cosine, bert = scorers
    assert all(cosine.score(o, s.expected_output, s) == pytest.approx(1.0) for s, o in pairs)
    assert all(bert.score(o, s.expected_output, s) == pytest.approx(1.0) for s, o in pairs)
    calls = stub.seen("/v1/embeddings")
    assert len(calls) <= 6 and all(len(c.body["input"]) <= 64 for c in calls)  # batched, not a call per sample
    stub.plan("500", "500", "500")
    failing = resolve_metrics(["cosine-embedding"], context=metric_context(tables, {}))
    await prefetch_embeddings(failing, [(sample("x", "q", "new text"), "other text")])
    with pytest.raises(ScoreError) as info:
        failing[0].score("other text", "new text", sample("x", "q", "new text"))
    assert info.value.kind == "embedding-failed" and "answered 500" in info.value.message


def test_calibration_case_type_is_exported() -> None:
    assert CalibrationCase.__slots__  # a value type, like the other models


async def test_losing_redis_while_judging_falls_back_to_judging_here(
    stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalharness.core.connection import async_client

    scorers = _judge(stub, "llm-as-judge", monkeypatch)
    pairs = [(sample("a", "q", "Paris"), "Paris"), (sample("b", "q", "Paris"), "Rome")]
    gone = async_client("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        step = await judge_outputs(scorers, pairs, client=gone, run_id="r1")
    finally:
        await gone.aclose()
    assert step.jobs == 0 and step.in_process == 2
    assert "Redis failed while judging" in step.diagnostics[0]
    assert [scorers[0].score(o, s.expected_output, s) for s, o in pairs] == [1.0, 0.0]
