"""Judge calibration: how well a judge metric agrees with human pass/fail labels.

Follows the PHP harness's calibrator: a verdict is *pass* when the judge's score is at least the
pass threshold (0.5); agreement = matching verdicts / cases (0 with no case); the confusion
counts ``true_pass``, ``true_fail``, ``false_pass`` (the judge passed what a human failed) and
``false_fail``; the length bias is Spearman's rank correlation of the output's length (code
points) with the judge's score, ranks tie-averaged, 0.0 with fewer than two scores or no
variance, clamped to [-1, 1].  Added here: Cohen's kappa over the scored cases, and cases the
judge could not score, which count as disagreements."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datasets import Sample
from .errors import DatasetError
from .metrics.base import ScoreError, Scorer

_LABELS = {"pass": True, "fail": False, "true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


@dataclass(frozen=True, slots=True)
class CalibrationCase:
    sample: Sample
    output: str
    human_pass: bool


def _label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    raise DatasetError(f'{where}: key \'human\': expected "pass" or "fail", got {value!r}')


def load_cases(path: Path) -> list[CalibrationCase]:
    """The cases of a JSONL file; every error names the file, line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from None
    cases: list[CalibrationCase] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object")
        output = next((row[k] for k in ("output", "actual") if k in row), None)
        if not isinstance(output, str):
            raise DatasetError(f"{where}: key 'output': expected the output text")
        label_key = next((k for k in ("human", "human_label", "human_verdict") if k in row), None)
        if label_key is None:
            raise DatasetError(f'{where}: key \'human\' is missing ("pass" or "fail")')
        human = _label(row[label_key], where)
        if "input" not in row:
            raise DatasetError(f"{where}: key 'input' is missing")
        case_id = str(row.get("id", f"case-{number}"))
        if case_id in seen:
            raise DatasetError(f"{where}: key 'id': {case_id!r} appears twice")
        seen.add(case_id)
        metadata = row.get("metadata", {})
        if not isinstance(metadata, dict):
            raise DatasetError(f"{where}: key 'metadata': expected an object")
        expected = row.get("expected", row.get("expected_output", ""))
        cases.append(CalibrationCase(Sample(case_id, row["input"], expected, metadata, number), output, human))
    if not cases:
        raise DatasetError(f"{path}: no cases")
    return cases


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        average = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = average
        i = j + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rho with tie-averaged ranks (Pearson of the ranks); 0.0 when undefined."""
    if len(xs) < 2:
        return 0.0
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = math.fsum(rx) / len(rx), math.fsum(ry) / len(ry)
    cov = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = math.fsum((a - mx) ** 2 for a in rx)
    vy = math.fsum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return 0.0
    return max(-1.0, min(1.0, cov / math.sqrt(vx * vy)))


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two raters' binary labels; None with no pair, 1.0 when both raters use
    one same label throughout (perfect, chance-free agreement), as scikit-learn does not."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    pa = sum(1 for a, _ in pairs if a) / n
    pb = sum(1 for _, b in pairs if b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected == 1:
        return 1.0
    return (observed - expected) / (1 - expected)


@dataclass
class Calibration:
    n: int
    agreement: float
    confusion: dict[str, int]
    kappa: float | None
    length_bias: float
    errors: list[dict[str, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "agreement": self.agreement,
            "confusion": dict(self.confusion),
            "kappa": self.kappa,
            "length_bias": self.length_bias,
            "errors": list(self.errors),
            "rows": list(self.rows),
        }


def calibrate(cases: Sequence[CalibrationCase], scorer: Scorer, *, pass_threshold: float = 0.5) -> Calibration:
    """Score each case with ``scorer`` (a judge whose verdicts are in already) and compare."""
    confusion = dict.fromkeys(
        ("true_pass", "true_fail", "false_pass", "false_fail", "unscored_pass", "unscored_fail"), 0
    )
    matches = 0
    pairs: list[tuple[bool, bool]] = []
    lengths: list[float] = []
    scores: list[float] = []
    errors: list[dict[str, str]] = []
    rows: list[dict[str, Any]] = []
    for case in cases:
        try:
            score = scorer.score(case.output, case.sample.expected_output, case.sample)
        except ScoreError as exc:
            confusion["unscored_pass" if case.human_pass else "unscored_fail"] += 1
            errors.append({"id": case.sample.id, "kind": exc.kind, "message": exc.message})
            rows.append(
                {"id": case.sample.id, "human": "pass" if case.human_pass else "fail", "score": None, "judge": None}
            )
            continue
        judge_pass = score >= pass_threshold
        if judge_pass == case.human_pass:
            matches += 1
        key = ("true_" if judge_pass == case.human_pass else "false_") + ("pass" if judge_pass else "fail")
        confusion[key] += 1
        pairs.append((case.human_pass, judge_pass))
        lengths.append(float(len(case.output)))
        scores.append(score)
        rows.append(
            {
                "id": case.sample.id,
                "human": "pass" if case.human_pass else "fail",
                "score": score,
                "judge": "pass" if judge_pass else "fail",
            }
        )
    n = len(cases)
    return Calibration(
        n=n,
        agreement=matches / n if n else 0.0,
        confusion=confusion,
        kappa=cohen_kappa(pairs),
        length_bias=spearman(lengths, scores),
        errors=errors,
        rows=rows,
    )
