"""Baselines and gates: a run's per-sample scores promoted under a name (kept in Redis without
expiry, exportable as a JSON file), compared with a later run per sample and per metric, and the
gates a CI job fails on: ``--max-regressions N`` against a baseline, ``--fail-under METRIC=VALUE``.

The comparison follows the PHP harness's regression gate: rows are joined by the hash of their
input and expected output (and their id, among rows that share one; by id alone when a side has
no hashes); a row *regressed* when its pass rate
fell, or its score mean fell by more than the run's resolution; it is *confident* when the change
is larger than the resolution, which is ``--compare-epsilon`` when given and otherwise what the
run's repetitions can resolve (1.0 with one execution per sample: nothing is told from noise).
Repetitions (``samples[i]["repetitions"]``) are used when a report has them, one observation per
sample otherwise."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .config import validate_name
from .datasets import Dataset, Sample
from .errors import ConfigError, EvalHarnessError
from .keys import GlobalKeys
from .queue import script_source
from .report import PASS_THRESHOLD, WILSON_Z95, macro_f1, wilson_interval

BASELINE_SCHEMA = "evalharness.baseline.v1"
COMPARISON_SCHEMA = "evalharness.comparison.v1"
_SHOWN_ROWS = 10


# -- rows -------------------------------------------------------------------------------------


def _canon(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canon(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return value


def row_hash(sample: Sample) -> str:
    """sha256 of the sample's input and expected output (not its id, not its metadata), so a
    renamed row still joins and an edited one does not."""
    body = json.dumps(
        {"input": _canon(sample.input), "expected": _canon(sample.expected_output)},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _executions(row: Mapping[str, Any], metrics: Sequence[str]) -> list[dict[str, float | None] | None]:
    """Each execution of a report row as its scores (None: the execution failed)."""
    reps = row.get("repetitions")
    if isinstance(reps, list) and reps:
        out: list[dict[str, float | None] | None] = []
        for rep in reps:
            scores = rep.get("scores") if isinstance(rep, Mapping) else None
            failed = not isinstance(scores, Mapping) or (isinstance(rep, Mapping) and rep.get("error"))
            out.append(None if failed else {m: _score(scores, m) for m in metrics})  # type: ignore[arg-type]
        return out
    if row.get("error") is not None:
        return [None]
    scores = row.get("scores") or {}
    return [{m: _score(scores, m) for m in metrics}]


def _score(scores: Mapping[str, Any], metric: str) -> float | None:
    value = scores.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def row_summary(row: Mapping[str, Any], metrics: Sequence[str], hashed: str | None = None) -> dict[str, Any]:
    """A report row as a baseline keeps it: per execution pass or fail, pass rate, score mean,
    and per metric the observations."""
    execs = _executions(row, metrics)
    passed = 0
    means: list[float] = []
    per_metric: dict[str, list[float]] = {m: [] for m in metrics}
    for ex in execs:
        if ex is None:
            continue
        values = [v for v in ex.values() if v is not None]
        if all(v is not None and v >= PASS_THRESHOLD for v in ex.values()):
            passed += 1
        if values:
            means.append(math.fsum(values) / len(values))
        for m, v in ex.items():
            if v is not None:
                per_metric[m].append(v)
    n = len(execs)
    return {
        "id": row.get("id"),
        "row_hash": hashed,
        "executions": n,
        "passed": passed,
        "pass_rate": passed / n if n else 0.0,
        "score_mean": math.fsum(means) / len(means) if means else None,
        "metrics": {m: values for m, values in per_metric.items()},
    }


def summarise_report(report: Mapping[str, Any], dataset: Dataset | None = None) -> dict[str, Any]:
    """What a baseline keeps of a report: per row its executions and scores, per metric the
    aggregates, and the run's summary.  With the ``dataset`` the rows carry their content hash."""
    metrics = list((report.get("metrics") or {}).keys())
    by_id = {s.id: s for s in dataset.samples} if dataset is not None else {}
    rows = []
    for row in report.get("samples") or []:
        sample = by_id.get(str(row.get("id")))
        rows.append(row_summary(row, metrics, row_hash(sample) if sample is not None else None))
    return {
        "metrics": {
            name: {k: stats.get(k) for k in ("mean", "pass_rate", "stddev", "count")}
            for name, stats in (report.get("metrics") or {}).items()
        },
        "rows": rows,
        "summary": {
            "macro_f1": report.get("macro_f1"),
            "total_samples": report.get("total_samples"),
            "scored_samples": report.get("scored_samples"),
            "failures": (report.get("failures") or {}).get("total"),
            "finished_at": report.get("finished_at"),
        },
    }


def baseline_document(
    name: str, report: Mapping[str, Any], dataset: Dataset | None = None, now: float | None = None
) -> dict[str, Any]:
    """The ``evalharness.baseline.v1`` document of ``report`` promoted as ``name``."""
    data = report.get("dataset") or {}
    return {
        "schema_version": BASELINE_SCHEMA,
        "name": name,
        "run_id": report.get("run_id"),
        "sut": report.get("sut"),
        "sut_fingerprint": report.get("sut_fingerprint"),
        "dataset": {"name": data.get("name"), "path": data.get("path"), "samples": data.get("samples")},
        "promoted_at": time.time() if now is None else now,
        **summarise_report(report, dataset),
    }


def check_document(doc: Any, where: str) -> dict[str, Any]:
    """A baseline document read from a file or Redis, checked; an error names where it came from."""
    if not isinstance(doc, dict) or doc.get("schema_version") != BASELINE_SCHEMA:
        raise EvalHarnessError(f"{where} is not a baseline (schema_version {BASELINE_SCHEMA!r} expected)")
    rows = doc.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "id" in r and "pass_rate" in r for r in rows):
        raise EvalHarnessError(f"{where}: key 'rows' must be a list of rows with 'id' and 'pass_rate'")
    if not isinstance(doc.get("metrics"), dict):
        raise EvalHarnessError(f"{where}: key 'metrics' must be a table of metric aggregates")
    return doc


# -- store ------------------------------------------------------------------------------------


class BaselineStore:
    """Baselines in Redis under ``<prefix>:baseline:<name>`` (no expiry), listed in ``<prefix>:baselines``."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = GlobalKeys(prefix)
        self._put = client.register_script(script_source("baseline_put"))
        self._drop = client.register_script(script_source("baseline_drop"))

    async def put(self, doc: Mapping[str, Any]) -> bool:
        """Store ``doc`` under its name; True when it replaced one."""
        name = validate_name("baseline name", str(doc["name"]))
        raw = json.dumps(doc, ensure_ascii=False, allow_nan=False)
        ms = int(float(doc.get("promoted_at") or time.time()) * 1000)
        return bool(await self._put(keys=[self.keys.baseline(name), self.keys.baselines], args=[name, raw, ms]))

    async def get(self, name: str) -> dict[str, Any] | None:
        raw = await self.client.get(self.keys.baseline(validate_name("baseline name", name)))
        return None if raw is None else check_document(json.loads(raw), f"baseline {name!r} in Redis")

    async def require(self, name: str) -> dict[str, Any]:
        doc = await self.get(name)
        if doc is None:
            known = await self.names()
            raise EvalHarnessError(
                f"--compare: no baseline named {name!r} (known: {', '.join(known) or 'none'}); "
                f"promote one with `evalharness baseline promote RUN_ID --name {name}`"
            )
        return doc

    async def names(self) -> list[str]:
        return [str(n) for n in await self.client.zrange(self.keys.baselines, 0, -1)]

    async def list(self) -> list[dict[str, Any]]:
        out = []
        for name in await self.names():
            doc = await self.get(name)
            if doc is not None:
                out.append(
                    {
                        "name": name,
                        "run_id": doc.get("run_id"),
                        "dataset": (doc.get("dataset") or {}).get("name"),
                        "samples": len(doc["rows"]),
                        "promoted_at": doc.get("promoted_at"),
                        "macro_f1": (doc.get("summary") or {}).get("macro_f1"),
                    }
                )
        return out

    async def drop(self, name: str) -> bool:
        return bool(
            await self._drop(
                keys=[self.keys.baseline(validate_name("baseline name", name)), self.keys.baselines], args=[name]
            )
        )


# -- comparison -------------------------------------------------------------------------------


def resolution(variance: float, n: int, z: float = WILSON_Z95) -> float:
    """The smallest pass-rate difference ``n`` executions per row can tell from noise
    (METRICS/PHP ``SamplingPrecision``): 1 below two executions, the rule of three when every row
    agreed with itself, else z·sqrt(2v/n)."""
    if n < 2:
        return 1.0
    if variance <= 0:
        return min(1.0, 3 / n)
    return min(1.0, z * math.sqrt(2 * variance / n))


def run_resolution(rows: Sequence[Mapping[str, Any]]) -> float:
    """The resolution of a run from its rows' within-row variance and executions per row."""
    if not rows:
        return 1.0
    n = min(int(r.get("executions") or 1) for r in rows)
    v = math.fsum(float(r["pass_rate"]) * (1 - float(r["pass_rate"])) for r in rows) / len(rows)
    return resolution(max(0.0, v), n)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _mean_delta(before: Sequence[float], after: Sequence[float]) -> dict[str, Any]:
    """Difference of two means with a normal 95 % interval (population variances; a side with one
    observation has no spread of its own)."""
    mb, ma = _mean(before), _mean(after)
    if mb is None or ma is None:
        return {"before": mb, "after": ma, "delta": None, "low": None, "high": None}

    def var(xs: Sequence[float], m: float) -> float:
        return math.fsum((x - m) ** 2 for x in xs) / len(xs)

    half = WILSON_Z95 * math.sqrt(var(before, mb) / len(before) + var(after, ma) / len(after))
    d = ma - mb
    return {"before": mb, "after": ma, "delta": d, "low": d - half, "high": d + half}


def _rate_delta(pb: int, nb: int, pa: int, na: int) -> dict[str, Any]:
    """Difference of two pass rates with Newcombe's hybrid interval from the two Wilson intervals."""
    if nb == 0 or na == 0:
        return {"before": None, "after": None, "delta": None, "low": None, "high": None}
    rb, ra = pb / nb, pa / na
    lb, ub = wilson_interval(pb, nb)
    la, ua = wilson_interval(pa, na)
    d = ra - rb
    return {
        "before": rb,
        "after": ra,
        "delta": d,
        "low": d - math.sqrt((ra - la) ** 2 + (ub - rb) ** 2),
        "high": d + math.sqrt((ua - ra) ** 2 + (rb - lb) ** 2),
        "before_ci": {"low": lb, "high": ub},
        "after_ci": {"low": la, "high": ua},
    }


def _verdict(before: Mapping[str, Any], after: Mapping[str, Any], r: float) -> tuple[str, bool]:
    dp = float(after["pass_rate"]) - float(before["pass_rate"])
    sb, sa = before.get("score_mean"), after.get("score_mean")
    ds = None if sb is None or sa is None else float(sa) - float(sb)
    if dp < 0:
        return "regressed", abs(dp) > r
    if ds is not None and ds < -r:
        return "regressed", True
    if dp > 0:
        return "improved", abs(dp) > r
    if ds is not None and ds > r:
        return "improved", True
    return "stable", False


def compare(current: Mapping[str, Any], baseline: Mapping[str, Any], *, epsilon: float | None = None) -> dict[str, Any]:
    """Compare a run's summary (:func:`summarise_report`) with a baseline document, per row and per
    metric; the result is the ``evalharness.comparison.v1`` document."""
    rows_a, rows_b = list(current["rows"]), list(baseline["rows"])
    by_hash = all(r.get("row_hash") for r in rows_a + rows_b)
    key = "row_hash" if by_hash else "id"
    warnings = (
        []
        if by_hash
        else [
            "rows joined by sample id: the baseline (or this run) has no content hashes, "
            "so a renamed row reads as removed and added"
        ]
    )
    # Rows with the same input and expected output (one question asked twice) share a hash: those
    # are told apart by their sample id, or the second would replace the first
    shared: set[str] = set()
    if by_hash:
        for rows in (rows_a, rows_b):
            shared |= {h for h, n in Counter(str(r["row_hash"]) for r in rows).items() if n > 1}
        if shared:
            n = sum(1 for row in rows_a if str(row["row_hash"]) in shared)
            warnings.append(
                f"{n} row(s) of this run share their input and expected output with another row: "
                "those are joined by content and sample id"
            )

    def join_key(row: Mapping[str, Any]) -> str:
        value = str(row[key])
        return f"{value}#{row.get('id')}" if value in shared else value

    before = {join_key(r): r for r in rows_b}
    after = {join_key(r): r for r in rows_a}
    if epsilon is not None:
        r, statistical = float(epsilon), False
    else:
        r, statistical = run_resolution(rows_a), True
    out_rows: list[dict[str, Any]] = []
    counts = dict.fromkeys(
        (
            "regressed",
            "regressed_confident",
            "newly_failing",
            "improved",
            "improved_confident",
            "stable",
            "added",
            "removed",
            "compared",
        ),
        0,
    )
    for k, a in after.items():
        b = before.get(k)
        if b is None:
            counts["added"] += 1
            out_rows.append({"sample_id": a["id"], "status": "added", "confident": False, "newly_failing": False})
            continue
        counts["compared"] += 1
        status, confident = _verdict(b, a, r)
        counts[status] += 1
        if confident and status in ("regressed", "improved"):
            counts[f"{status}_confident"] += 1
        newly = float(b["pass_rate"]) >= PASS_THRESHOLD > float(a["pass_rate"])
        counts["newly_failing"] += int(newly)
        flips = {}
        for m, values in (a.get("metrics") or {}).items():
            old = (b.get("metrics") or {}).get(m) or []
            if values and old:
                was, now = (_mean(old) or 0.0) >= PASS_THRESHOLD, (_mean(values) or 0.0) >= PASS_THRESHOLD
                if was != now:
                    flips[m] = "pass→fail" if was else "fail→pass"
        out_rows.append(
            {
                "sample_id": a["id"],
                "baseline_id": b["id"],
                "status": status,
                "confident": confident,
                "newly_failing": newly,
                "pass_rate_before": b["pass_rate"],
                "pass_rate_after": a["pass_rate"],
                "pass_rate_delta": float(a["pass_rate"]) - float(b["pass_rate"]),
                "score_before": b.get("score_mean"),
                "score_after": a.get("score_mean"),
                "score_delta": None
                if a.get("score_mean") is None or b.get("score_mean") is None
                else float(a["score_mean"]) - float(b["score_mean"]),
                "flips": flips,
            }
        )
    for k, b in before.items():
        if k not in after:
            counts["removed"] += 1
            out_rows.append({"sample_id": b["id"], "status": "removed", "confident": False, "newly_failing": False})
    metrics: dict[str, Any] = {}
    joined = [(before[k], a) for k, a in after.items() if k in before]
    names = list(dict.fromkeys([*(current.get("metrics") or {}), *(baseline.get("metrics") or {})]))
    for m in names:
        obs_b = [v for b, _ in joined for v in (b.get("metrics") or {}).get(m) or []]
        obs_a = [v for _, a in joined for v in (a.get("metrics") or {}).get(m) or []]
        pb, pa = sum(1 for v in obs_b if v >= PASS_THRESHOLD), sum(1 for v in obs_a if v >= PASS_THRESHOLD)
        metrics[m] = {
            "mean": _mean_delta(obs_b, obs_a),
            "pass_rate": _rate_delta(pb, len(obs_b), pa, len(obs_a)),
            "pass_to_fail": sum(1 for row in out_rows if (row.get("flips") or {}).get(m) == "pass→fail"),
            "fail_to_pass": sum(1 for row in out_rows if (row.get("flips") or {}).get(m) == "fail→pass"),
        }
    mf_a, mf_b = macro_f1(current.get("metrics") or {}), (baseline.get("summary") or {}).get("macro_f1")
    order = {"regressed": 0, "improved": 1, "added": 2, "removed": 3, "stable": 4}
    out_rows.sort(
        key=lambda row: (
            order[row["status"]],
            not row["confident"],
            row.get("pass_rate_delta") or 0.0,
            str(row["sample_id"]),
        )
    )
    return {
        "schema_version": COMPARISON_SCHEMA,
        "baseline": {
            "name": baseline.get("name"),
            "run_id": baseline.get("run_id"),
            "promoted_at": baseline.get("promoted_at"),
        },
        "joined_by": key,
        "resolution": r,
        "resolution_is_statistical": statistical,
        "macro_f1_delta": None if mf_a is None or mf_b is None else mf_a - float(mf_b),
        "counts": counts,
        "metrics": metrics,
        "rows": out_rows,
        "warnings": warnings,
    }


# -- gates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gates:
    """The gates of one run, checked before anything is dispatched."""

    compare: str | None = None
    max_regressions: int | None = None
    confident_only: bool = False
    epsilon: float | None = None
    comparison_out: str | None = None
    fail_under: tuple[tuple[str, float], ...] = ()

    @property
    def any(self) -> bool:
        return self.compare is not None or bool(self.fail_under)


def parse_fail_under(specs: Sequence[str], metrics: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """``METRIC=VALUE`` pairs; an error names the flag, the value and the metrics the run has.

    METRIC is a metric as the run names it, arguments included (``rouge-l:max_tokens=100=0.5``:
    the value follows the last ``=``), or its bare name when one metric of the run has it
    (``rouge-l=0.5``)."""
    out = []
    for spec in specs:
        name, sep, value = spec.rpartition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--fail-under must be METRIC=VALUE (exact-match=0.8), got {spec!r}")
        try:
            threshold = float(value)
        except ValueError:
            raise ConfigError(f"--fail-under {spec!r}: {value!r} is not a number") from None
        if not 0 <= threshold <= 1:  # NaN and the infinities too
            percent = threshold.is_integer() and 1 < threshold <= 100
            raise ConfigError(
                f"--fail-under {spec!r}: the threshold must be between 0 and 1, as every metric's mean is"
                + (f" (for {threshold:g}%, write {threshold / 100:g})" if percent else "")
            )
        if name not in metrics:
            same = [m for m in metrics if m.partition(":")[0] == name]
            if len(same) > 1:
                raise ConfigError(
                    f"--fail-under {spec!r}: the run has {len(same)} metrics named {name!r} ({', '.join(same)}); "
                    "name one with its arguments"
                )
            if not same:
                raise ConfigError(
                    f"--fail-under {spec!r}: the run has no metric {name!r} (its metrics: {', '.join(metrics)})"
                )
            name = same[0]
        out.append((name, threshold))
    return tuple(out)


def check_gates(
    *,
    compare: str | None,
    max_regressions: int | None,
    confident_only: bool,
    epsilon: float | None,
    comparison_out: str | None,
    fail_under: Sequence[str],
    metrics: Sequence[str],
) -> Gates:
    """The gate flags, validated together (a flag that needs --compare names it)."""
    if compare is None:
        for flag, given in (
            ("--max-regressions", max_regressions is not None),
            ("--confident-only", confident_only),
            ("--compare-epsilon", epsilon is not None),
            ("--comparison-out", comparison_out is not None),
        ):
            if given:
                raise ConfigError(f"{flag} needs --compare NAME (the baseline to compare with)")
    else:
        validate_name("--compare baseline name", compare)
    if max_regressions is not None and max_regressions < 0:
        raise ConfigError(f"--max-regressions must be >= 0, got {max_regressions}")
    if epsilon is not None and not (0 <= epsilon <= 1):
        raise ConfigError(f"--compare-epsilon must be between 0 and 1 (a pass-rate difference), got {epsilon:g}")
    return Gates(
        compare, max_regressions, confident_only, epsilon, comparison_out, parse_fail_under(fail_under, metrics)
    )


def gate_failures(report: Mapping[str, Any], comparison: Mapping[str, Any] | None, gates: Gates) -> list[str]:
    """Why the run fails its gates (empty: it passes them)."""
    problems = []
    for name, threshold in gates.fail_under:
        mean = ((report.get("metrics") or {}).get(name) or {}).get("mean")
        if mean is None or mean < threshold:
            shown = "n/a" if mean is None else f"{mean:.4f}"
            problems.append(f"{name} mean {shown} is below the minimum {threshold:.4f} (--fail-under)")
    if comparison is not None and gates.max_regressions is not None:
        c = comparison["counts"]
        counted = c["regressed_confident"] if gates.confident_only else c["regressed"]
        if counted > gates.max_regressions:
            what = "confidently " if gates.confident_only else ""
            note = ""
            if not gates.confident_only and c["regressed"]:
                note = (
                    f"; {c['regressed_confident']} of {c['regressed']} exceed the resolution of "
                    f"{comparison['resolution'] * 100:.1f} points, the rest are within sampling noise"
                )
            problems.append(
                f"{counted} {what}regressed sample(s) against baseline {comparison['baseline']['name']!r} "
                f"(allowed: {gates.max_regressions}){note}"
            )
    return problems


def comparison_lines(comparison: Mapping[str, Any]) -> list[str]:
    """The comparison section of the terminal report."""
    c = comparison["counts"]
    r = comparison["resolution"]
    how = "this run's detectable difference" if comparison["resolution_is_statistical"] else "--compare-epsilon"
    lines = [
        f"Comparison with baseline {comparison['baseline']['name']!r} (run {comparison['baseline'].get('run_id')}):",
        f"  {c['regressed']} regressed ({c['regressed_confident']} beyond {how} of {r * 100:.1f} points), "
        f"{c['improved']} improved, {c['added']} added, {c['removed']} removed, {c['compared']} compared.",
    ]
    for name, m in comparison["metrics"].items():
        mean = m["mean"]
        if mean["delta"] is not None:
            lines.append(
                f"  {name}: mean {mean['before']:.4f} → {mean['after']:.4f} "
                f"(Δ {mean['delta']:+.4f}, 95% CI {mean['low']:+.4f} … {mean['high']:+.4f}); "
                f"{m['pass_to_fail']} pass→fail, {m['fail_to_pass']} fail→pass"
            )
    changed = [row for row in comparison["rows"] if row["status"] != "stable"]
    for row in changed[:_SHOWN_ROWS]:
        if row["status"] in ("added", "removed"):
            lines.append(f"  {str(row['sample_id'])[:28]:<28} {row['status']}")
            continue
        score = "n/a" if row.get("score_delta") is None else f"{row['score_delta']:+.4f}"
        lines.append(
            f"  {str(row['sample_id'])[:28]:<28} {row['pass_rate_before']:.2f} → {row['pass_rate_after']:.2f}   "
            f"score {score}   {row['status']}{' (confident)' if row['confident'] else ''}"
        )
    if len(changed) > _SHOWN_ROWS:
        lines.append(
            f"  … and {len(changed) - _SHOWN_ROWS} more. Write the full comparison with --comparison-out FILE."
        )
    for w in comparison.get("warnings") or []:
        lines.append(f"  note: {w}")
    return lines
