"""The run record: what `evalharness report RUN_ID` rebuilds a report from, and what a run that
stopped would need to be continued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalharness.core.datasets import Dataset, Sample
from evalharness.core.runs import FIELDS, RunRecord, RunStore, dataset_fingerprint


def dataset(*inputs: Any, name: str = "qa", path: str = "data/qa.jsonl") -> Dataset:
    samples = tuple(
        Sample(id=f"s{i}", input=x, expected_output="y", metadata={"n": i}, line=i + 1) for i, x in enumerate(inputs)
    )
    return Dataset(path=Path(path), name=name, samples=samples)


def record(ds: Dataset, **overrides: Any) -> RunRecord:
    values: dict[str, Any] = dict(
        id="01run",
        state="running",
        dataset=ds,
        fingerprint=dataset_fingerprint(ds),
        sut="mybot:answer",
        metrics=("exact-match", "contains"),
        mode="lazy-parallel",
        options={"concurrency": 4, "tries": 3},
        queue="evals",
        started_at=1_700_000_000.25,
        batch="run-01run",
        sink="run-01run",
    )
    values.update(overrides)
    return RunRecord(**values)


def test_the_fingerprint_follows_the_samples_not_the_file() -> None:
    a = dataset("q1", {"question": "q2", "ctx": [1, 2]})
    assert dataset_fingerprint(a) == dataset_fingerprint(
        dataset("q1", {"ctx": [1, 2], "question": "q2"}, name="other", path="x.yaml")
    )
    assert dataset_fingerprint(a) != dataset_fingerprint(dataset("q1", {"question": "q2", "ctx": [2, 1]}))
    assert dataset_fingerprint(a) != dataset_fingerprint(dataset({"question": "q2", "ctx": [1, 2]}, "q1"))
    assert dataset_fingerprint(a).startswith("sha256:")


def test_a_record_round_trips_and_keeps_fields_it_does_not_know() -> None:
    ds = dataset("q1", {"question": "q2"}, "Ünïcode")
    rec = record(
        ds, state="interrupted", finished_at=1_700_000_060.5, dispatched=2, interrupted="SIGINT", diagnostics=("d1",)
    )
    fields = rec.fields()
    assert set(fields) == FIELDS and all(isinstance(v, str) for v in fields.values())
    fields["resume_from"] = "2"  # a field a later format adds
    back = RunRecord.from_fields(fields)
    assert back.dataset == ds and back.extra == {"resume_from": "2"}
    assert back == RunRecord(**{**rec.__dict__, "extra": {"resume_from": "2"}})
    assert back.fields()["resume_from"] == "2"


async def test_the_store_keeps_a_record_for_its_ttl_and_indexes_it(aclient: Any) -> None:
    store = RunStore(aclient, "eh")
    ds = dataset("q1")
    await store.create(record(ds, result_ttl=600))
    assert 590 < await aclient.ttl("eh:run:01run") <= 600
    assert await aclient.zscore("eh:runs", "01run") == 1_700_000_000_250
    await store.update("01run", 900, state="finished", finished_at=1_700_000_001.5, diagnostics=["x"])
    loaded = await store.load("01run")
    assert loaded is not None and loaded.state == "finished" and loaded.finished_at == 1_700_000_001.5
    assert loaded.diagnostics == ("x",) and 890 < await aclient.ttl("eh:run:01run") <= 900
    assert await store.load("nope") is None
    # an index entry whose record expired goes when the next run is recorded
    await aclient.delete("eh:run:01run")
    await store.create(record(ds, id="02run"))
    assert await aclient.zrange("eh:runs", 0, -1) == ["02run"]


def test_a_resume_refused_for_a_changed_dataset_names_the_file_read_and_the_one_the_run_began_with(
    tmp_path: Path,
) -> None:
    from evalharness.core.resume import _which

    (tmp_path / "big.jsonl").write_text("")
    assert _which(tmp_path / "big.jsonl", tmp_path / "." / "big.jsonl") == str(tmp_path / "." / "big.jsonl")
    assert _which(Path("capitals.jsonl"), Path("big.jsonl")) == "capitals.jsonl; the run started with big.jsonl"
