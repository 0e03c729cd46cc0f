"""Load evaluation datasets from JSONL, YAML or CSV files into typed, validated samples; pick a
subset of them for a run; read saved outputs to score without a SUT.

Every problem is a :class:`DatasetError` whose message starts with ``"{path}:{line}: "`` and names the
key, column or field.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import random
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from .errors import DatasetError

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".jsonl", ".yaml", ".yml", ".csv")
DEFAULT_INPUT_COLUMN = "input"
DEFAULT_EXPECTED_COLUMN = "expected_output"
ID_COLUMN = "id"
SAMPLE_KEYS: tuple[str, ...] = ("id", "input", "expected_output", "metadata")
REQUIRED_SAMPLE_KEYS: tuple[str, ...] = ("id", "input", "expected_output")
_SAMPLE_KEY_SET = frozenset(SAMPLE_KEYS)
_TOP_KEYS: tuple[str, ...] = ("name", "samples")
_JSON_WHITESPACE = " \t\r\n"


@dataclass(frozen=True, slots=True)
class Sample:
    """One row of a dataset; ``line`` is the 1-based line where it starts in its file."""

    id: str
    input: Any
    expected_output: Any
    metadata: dict[str, Any]
    line: int


@dataclass(frozen=True, slots=True)
class Dataset:
    """A loaded dataset: samples in file order, ids unique."""

    path: Path
    name: str
    samples: tuple[Sample, ...]


def load_dataset(path: str | Path, *, input_col: str | None = None, expected_col: str | None = None) -> Dataset:
    """Read and validate a ``.jsonl``, ``.yaml``, ``.yml`` or ``.csv`` dataset file.

    ``input_col`` and ``expected_col`` name a CSV file's input and expected-output columns
    (default ``input`` and ``expected_output``); they are an error for the other formats."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        shown = f"'{p.suffix}'" if p.suffix else "no extension"
        raise DatasetError(
            f"{p}: unsupported dataset format ({shown}); supported extensions: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if suffix != ".csv":
        for flag, value in (("--input-col", input_col), ("--expected-col", expected_col)):
            if value is not None:
                raise DatasetError(f"{flag} applies to CSV datasets only; {p} is {suffix[1:].upper()}")
    for flag, value in (("--input-col", input_col), ("--expected-col", expected_col)):
        if value is not None and not value.strip():
            raise DatasetError(f"{flag} must name a column, got an empty string")
    text = _read_text(p)
    if suffix == ".csv":
        return Dataset(
            path=p,
            name=p.stem,
            samples=_load_csv(p, text, input_col or DEFAULT_INPUT_COLUMN, expected_col or DEFAULT_EXPECTED_COLUMN),
        )
    if suffix == ".jsonl":
        return Dataset(path=p, name=p.stem, samples=_load_jsonl(p, text))
    from .dataset_yaml import YamlReader  # PyYAML is loaded for YAML datasets only

    name, samples = YamlReader(p, text).read()
    return Dataset(path=p, name=name if name is not None else p.stem, samples=samples)


def _read_text(p: Path) -> str:
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise DatasetError(f"{p}: is a directory, not a dataset file") from None
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DatasetError(
            f"{p}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte column {column})"
        ) from None
    # Editors on Windows like to start UTF-8 files with a byte order mark; it is not data.
    return text.removeprefix("\ufeff")


def _kind(value: Any, mapping_word: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "empty string" if value == "" else "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return mapping_word
    return type(value).__name__


def _unknown_key_message(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}"


def _check_keys(keys: Iterable[str], line_of: Callable[[str], int], fail: Callable[[int, str], NoReturn]) -> None:
    present = set(keys)
    # Unknown keys first: a typo such as ``expected`` would otherwise be reported as a missing key.
    if not _SAMPLE_KEY_SET.issuperset(present):
        for key in keys:
            if key not in _SAMPLE_KEY_SET:
                fail(line_of(key), _unknown_key_message(key, SAMPLE_KEYS))
    for key in REQUIRED_SAMPLE_KEYS:
        if key not in present:
            fail(line_of(""), f"missing key {key!r}")


def _check_values(
    fields: Mapping[str, Any],
    line_of: Callable[[str], int],
    fail: Callable[[int, str], NoReturn],
    mapping_word: str,
) -> tuple[str, dict[str, Any]]:
    """Validate one sample's values (keys already checked); return its id and metadata."""
    raw_id = fields["id"]
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        sample_id = str(raw_id)
    elif isinstance(raw_id, str) and raw_id.strip():
        sample_id = raw_id
    else:
        got = "blank string" if isinstance(raw_id, str) and raw_id else _kind(raw_id, mapping_word)
        fail(line_of("id"), f"key 'id' must be a non-empty string or an integer, got {got}")
    for key in ("input", "expected_output"):
        if fields[key] is None:
            fail(line_of(key), f"key {key!r} must not be null")
    metadata = fields.get("metadata")
    if metadata is None:
        # An explicit null is what many JSON writers emit for "no metadata".
        metadata = {}
    elif not isinstance(metadata, dict):
        got = _kind(metadata, mapping_word)
        fail(line_of("metadata"), f"key 'metadata' must be {_a(mapping_word)}, got {got}")
    return sample_id, metadata


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


class _JsonProblem(ValueError):
    """Raised from inside the JSON decoder hooks; caught per line and turned into a DatasetError."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _JsonProblem(f"duplicate key {key!r} in one JSON object")
            seen.add(key)
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _JsonProblem(f"invalid JSON: number {text} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise _JsonProblem(f"invalid JSON: {name} is not a JSON value")


# One decoder for every line: json.loads(**hooks) would build a new one per call.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicate_keys, parse_float=_finite_float, parse_constant=_reject_constant
)


def _load_jsonl(p: Path, text: str) -> tuple[Sample, ...]:
    def fail(line: int, message: str) -> NoReturn:
        raise DatasetError(f"{p}:{line}: {message}")

    samples: list[Sample] = []
    first_line: dict[str, int] = {}
    decode = _DECODER.decode
    # Split on "\n" only: str.splitlines would also break on U+2028 and friends, which JSON allows raw.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip(_JSON_WHITESPACE):
            continue
        try:
            row = decode(raw)
        except json.JSONDecodeError as exc:
            fail(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
        except _JsonProblem as exc:
            fail(number, str(exc))
        except RecursionError:
            fail(number, "invalid JSON: nested too deeply")
        if not isinstance(row, dict):
            fail(number, f"expected a JSON object, got {_kind(row, 'object')}")

        def line_of(_key: str, number: int = number) -> int:
            return number

        _check_keys(row, line_of, fail)
        sample_id, metadata = _check_values(row, line_of, fail, "object")
        if sample_id in first_line:
            fail(number, f"duplicate id {sample_id!r} (first at line {first_line[sample_id]})")
        first_line[sample_id] = number
        samples.append(
            Sample(
                id=sample_id,
                input=row["input"],
                expected_output=row["expected_output"],
                metadata=metadata,
                line=number,
            )
        )
    if not samples:
        fail(1, "dataset has no samples")
    return tuple(samples)


# -- CSV ---------------------------------------------------------------------------------


def _load_csv(p: Path, text: str, input_col: str, expected_col: str) -> tuple[Sample, ...]:
    """A header row, then one sample per row: ``input_col`` and ``expected_col`` are required,
    an ``id`` column is used when there is one (else the row's number), every other column goes
    to the sample's metadata as text."""

    def fail(line: int, message: str) -> NoReturn:
        raise DatasetError(f"{p}:{line}: {message}")

    # newline="" keeps quoted line breaks inside a field as they are, as the csv module wants.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 1
    samples: list[Sample] = []
    first_line: dict[str, int] = {}
    consumed = 0  # physical lines read so far: a record starts on the next one
    while True:
        start = consumed + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            fail(reader.line_num or start, f"invalid CSV: {exc}")
        consumed = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines separate nothing in CSV
        if header is None:
            header, header_line = _csv_header(row, start, fail), start
            missing = [
                (col, flag)
                for col, flag in ((input_col, "--input-col"), (expected_col, "--expected-col"))
                if col not in header
            ]
            if missing:
                col, flag = missing[0]
                fail(
                    start,
                    f"missing column {col!r} (choose the column with {flag}); the header has: {', '.join(header)}",
                )
            continue
        if len(row) != len(header):
            if len(row) < len(header):
                absent = ", ".join(repr(c) for c in header[len(row) :])
                fail(
                    start,
                    f"row has {len(row)} field(s), the header (line {header_line}) has {len(header)}: missing {absent}",
                )
            fail(
                start,
                f"row has {len(row)} fields, the header (line {header_line}) has {len(header)}: "
                f"unexpected field {len(header) + 1} after {header[-1]!r}",
            )
        fields = dict(zip(header, row, strict=True))
        if ID_COLUMN in fields:
            sample_id = fields[ID_COLUMN]
            if not sample_id.strip():
                fail(start, f"field {ID_COLUMN!r} is empty; every sample needs an id")
        else:
            sample_id = str(len(samples) + 1)
        if not fields[input_col].strip():
            fail(start, f"field {input_col!r} (the input column) is empty")
        if sample_id in first_line:
            fail(start, f"duplicate id {sample_id!r} (first at line {first_line[sample_id]})")
        first_line[sample_id] = start
        metadata = {k: v for k, v in fields.items() if k not in (ID_COLUMN, input_col, expected_col)}
        samples.append(
            Sample(
                id=sample_id,
                input=fields[input_col],
                expected_output=fields[expected_col],
                metadata=metadata,
                line=start,
            )
        )
    if header is None:
        fail(1, "no header row: a CSV dataset starts with a row of column names")
    if not samples:
        fail(header_line, "dataset has no samples (only a header row)")
    return tuple(samples)


def _csv_header(row: list[str], line: int, fail: Callable[[int, str], NoReturn]) -> list[str]:
    header = [name.strip() for name in row]
    seen: set[str] = set()
    for number, name in enumerate(header, start=1):
        if not name:
            fail(line, f"column {number} of the header has no name")
        if name in seen:
            fail(line, f"duplicate column {name!r} in the header")
        seen.add(name)
    return header


# -- subsets -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subset:
    """Which samples of a dataset a run takes, in run order, and how they were chosen."""

    positions: tuple[int, ...]  # 0-based positions in the dataset file, in run order
    of: int  # samples in the whole dataset
    limit: int | None = None
    sample_ids: tuple[str, ...] = ()
    shuffle: bool = False
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The report's ``subset`` key (docs/report.md)."""
        return {
            "of": self.of,
            "samples": len(self.positions),
            "limit": self.limit,
            "sample_ids": list(self.sample_ids) or None,
            "shuffle": self.shuffle,
            "seed": self.seed,
        }


def select_samples(
    dataset: Dataset,
    *,
    limit: int | None = None,
    sample_ids: Iterable[str] = (),
    shuffle: bool = False,
    seed: int | None = None,
) -> tuple[Dataset, Subset | None]:
    """The dataset a run takes: only the ``sample_ids`` (in file order) when given, then shuffled
    with ``seed`` (a random one, recorded, when None), then the first ``limit``.  Returns the
    dataset unchanged and None when nothing is asked for.  An unknown id or a bad value is a
    :class:`DatasetError` naming the flag."""
    ids = tuple(dict.fromkeys(sample_ids))  # a repeated --sample is taken once
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be >= 1, got {limit}")
    if seed is not None and not shuffle:
        raise DatasetError("--seed only applies with --shuffle (it chooses the shuffled order)")
    if limit is None and not ids and not shuffle:
        return dataset, None
    positions = list(range(len(dataset.samples)))
    if ids:
        where = {s.id: i for i, s in enumerate(dataset.samples)}
        unknown = [i for i in ids if i not in where]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown)
            raise DatasetError(f"--sample {shown}: no sample with this id in {dataset.path}")
        wanted = set(ids)
        positions = [i for i in positions if dataset.samples[i].id in wanted]
    if shuffle:
        if seed is None:
            seed = secrets.randbelow(2**31)
        # random.Random(seed).shuffle gives the same order for the same seed on every platform.
        random.Random(seed).shuffle(positions)
    if limit is not None:
        positions = positions[:limit]
    subset = Subset(
        positions=tuple(positions), of=len(dataset.samples), limit=limit, sample_ids=ids, shuffle=shuffle, seed=seed
    )
    picked = Dataset(path=dataset.path, name=dataset.name, samples=tuple(dataset.samples[i] for i in positions))
    return picked, subset


# -- saved outputs -----------------------------------------------------------------------


def load_outputs(path: str | Path, dataset: Dataset) -> dict[int, str]:
    """Read a JSONL file of saved outputs, one ``{"id": ..., "output": "..."}`` (or ``"index"``:
    the 0-based position in the dataset file instead of ``id``) per line, and return them by
    dataset position.  Other keys are ignored.  A line that names no sample of ``dataset``, names
    one twice, or has no text output is a :class:`DatasetError` naming the file and line."""
    p = Path(path)
    text = _read_text(p)

    def fail(line: int, message: str) -> NoReturn:
        raise DatasetError(f"{p}:{line}: {message}")

    where = {s.id: i for i, s in enumerate(dataset.samples)}
    outputs: dict[int, str] = {}
    first_line: dict[int, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip(_JSON_WHITESPACE):
            continue
        try:
            row = _DECODER.decode(raw)
        except json.JSONDecodeError as exc:
            fail(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
        except _JsonProblem as exc:
            fail(number, str(exc))
        except RecursionError:
            fail(number, "invalid JSON: nested too deeply")
        if not isinstance(row, dict):
            fail(number, f"expected a JSON object, got {_kind(row, 'object')}")
        if ("id" in row) == ("index" in row):
            fail(number, "each line needs exactly one of the keys 'id' and 'index'")
        if "id" in row:
            raw_id = row["id"]
            if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
                fail(number, f"key 'id' must be a string or an integer, got {_kind(raw_id, 'object')}")
            position = where.get(str(raw_id))
            if position is None:
                fail(number, f"key 'id': no sample {str(raw_id)!r} in {dataset.path}")
        else:
            index = row["index"]
            if isinstance(index, bool) or not isinstance(index, int):
                fail(number, f"key 'index' must be an integer, got {_kind(index, 'object')}")
            if not 0 <= index < len(dataset.samples):
                fail(number, f"key 'index' {index} is outside the dataset (0..{len(dataset.samples) - 1})")
            position = index
        if "output" not in row:
            fail(number, "missing key 'output'")
        if not isinstance(row["output"], str):
            fail(number, f"key 'output' must be a string, got {_kind(row['output'], 'object')}")
        if position in first_line:
            fail(
                number,
                f"a second output for sample {dataset.samples[position].id!r} (first at line {first_line[position]})",
            )
        first_line[position] = number
        outputs[position] = row["output"]
    if not outputs:
        fail(1, "no outputs in the file")
    return outputs
