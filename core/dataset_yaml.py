"""Reading a YAML dataset (``.yaml``, ``.yml``): imported by :func:`load_dataset` for those files
only, so a run of a JSON Lines or CSV dataset does not load PyYAML."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from .datasets import _TOP_KEYS, Sample, _check_keys, _check_values, _kind, _unknown_key_message
from .errors import DatasetError

try:  # libyaml is much faster; the pure loader gives the same nodes and tags.
    _YamlLoader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _YamlLoader = yaml.SafeLoader

_TAG = "tag:yaml.org,2002:"
_PLAIN_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null"))
_TIMESTAMP_TAG = _TAG + "timestamp"
_MERGE_TAG = _TAG + "merge"
_STR_TAG = _TAG + "str"
_INT_TAG = _TAG + "int"


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class YamlReader:
    """Builds JSON values from a composed YAML document, keeping node lines for every error."""

    def __init__(self, path: Path, text: str) -> None:
        self._path = path
        self._text = text
        self._constructor = SafeConstructor()
        # Aliases share nodes: memoise so that anchors are built once, and detect alias cycles.
        self._built: dict[int, Any] = {}
        self._building: set[int] = set()
        self._flattening: set[int] = set()

    def _fail(self, line: int, message: str) -> NoReturn:
        raise DatasetError(f"{self._path}:{line}: {message}")

    def read(self) -> tuple[str | None, tuple[Sample, ...]]:
        try:
            return self._read()
        except RecursionError:
            self._fail(1, "YAML is nested too deeply")

    def _read(self) -> tuple[str | None, tuple[Sample, ...]]:
        root = self._compose()
        if root is None:
            self._fail(1, "dataset has no samples")
        name: str | None = None
        if isinstance(root, SequenceNode) and root.tag == _TAG + "seq":
            samples_node: SequenceNode = root
        elif isinstance(root, MappingNode) and root.tag == _TAG + "map":
            pairs = self._pairs(root)
            for key, (key_node, _) in pairs.items():
                if key not in _TOP_KEYS:
                    self._fail(
                        _line(key_node),
                        _unknown_key_message(key, _TOP_KEYS).replace("unknown key", "unknown top-level key"),
                    )
            if "samples" not in pairs:
                self._fail(_line(root), "missing key 'samples'")
            if "name" in pairs:
                name_key, name_node = pairs["name"]
                value = self._value(name_node)
                if not isinstance(value, str) or not value.strip():
                    self._fail(_line(name_key), f"key 'name' must be a non-empty string, got {_kind(value, 'mapping')}")
                name = value
            samples_key, node = pairs["samples"]
            if not (isinstance(node, SequenceNode) and node.tag == _TAG + "seq"):
                got = _kind(self._value(node), "mapping")
                self._fail(_line(samples_key), f"key 'samples' must be a list, got {got}")
            samples_node = node
        else:
            self._fail(
                _line(root),
                "the top level must be a list of samples or a mapping with 'samples' (and optional 'name'), "
                f"got {_kind(self._value(root), 'mapping')}",
            )
        samples = tuple(self._sample(node) for node in samples_node.value)
        if not samples:
            self._fail(_line(samples_node), "dataset has no samples")
        seen: dict[str, int] = {}
        for sample in samples:
            if sample.id in seen:
                self._fail(sample.line, f"duplicate id {sample.id!r} (first at line {seen[sample.id]})")
            seen[sample.id] = sample.line
        return name, samples

    def _compose(self) -> Node | None:
        try:
            return yaml.compose(self._text, Loader=_YamlLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = int(mark.line) + 1 if mark is not None else 1
            parts = [exc.problem or "syntax error"]
            if exc.context:
                parts.append(f"({exc.context})")
            if mark is not None:
                parts.append(f"(column {int(mark.column) + 1})")
            self._fail(line, "invalid YAML: " + " ".join(parts))
        except ReaderError as exc:
            line = self._text.count("\n", 0, exc.position) + 1
            self._fail(line, f"invalid YAML: character {exc.character!r} is not allowed ({exc.reason})")
        except yaml.YAMLError as exc:
            self._fail(1, f"invalid YAML: {exc}")

    def _sample(self, node: Node) -> Sample:
        if not (isinstance(node, MappingNode) and node.tag == _TAG + "map"):
            self._fail(_line(node), f"sample must be a mapping, got {_kind(self._value(node), 'mapping')}")
        pairs = self._pairs(node)
        start = _line(node)

        def line_of(key: str) -> int:
            return _line(pairs[key][0]) if key in pairs else start

        # Check the keys before building values so a typo is reported as such.
        _check_keys(pairs, line_of, self._fail)
        self._check_yaml_int_id(pairs)
        fields = {key: self._value(value_node) for key, (_, value_node) in pairs.items()}
        sample_id, metadata = _check_values(fields, line_of, self._fail, "mapping")
        return Sample(
            id=sample_id,
            input=fields["input"],
            expected_output=fields["expected_output"],
            metadata=metadata,
            line=start,
        )

    def _check_yaml_int_id(self, pairs: dict[str, tuple[Node, Node]]) -> None:
        # YAML 1.1 reads 010 as 8 and 0x1F as 31; an id must not change silently.
        if "id" not in pairs:
            return
        key_node, value_node = pairs["id"]
        if isinstance(value_node, ScalarNode) and value_node.tag == _INT_TAG:
            number = self._value(value_node)
            if str(number) != value_node.value:
                self._fail(
                    _line(key_node),
                    f"key 'id' {value_node.value} is read by YAML as the integer {number}; quote it",
                )

    def _pairs(self, node: MappingNode) -> dict[str, tuple[Node, Node]]:
        """The mapping's effective entries (merge keys applied), keyed by string, with their nodes."""
        if id(node) in self._flattening:
            self._fail(_line(node), "recursive YAML alias")
        self._flattening.add(id(node))
        try:
            explicit: dict[str, tuple[Node, Node]] = {}
            merged: dict[str, tuple[Node, Node]] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    if isinstance(value_node, MappingNode):
                        sources: list[Node] = [value_node]
                    elif isinstance(value_node, SequenceNode):
                        sources = list(value_node.value)
                    else:
                        self._fail(_line(value_node), "a merge key '<<' needs a mapping or a list of mappings")
                    # YAML merge rule: earlier sources win over later ones, explicit keys over all.
                    for source in reversed(sources):
                        if not isinstance(source, MappingNode):
                            self._fail(_line(source), "a merge key '<<' needs a mapping or a list of mappings")
                        merged.update(self._pairs(source))
                    continue
                key = self._key(key_node)
                if key in explicit:
                    self._fail(_line(key_node), f"duplicate key {key!r} (first at line {_line(explicit[key][0])})")
                explicit[key] = (key_node, value_node)
            return {**merged, **explicit} if merged else explicit
        finally:
            self._flattening.discard(id(node))

    def _key(self, node: Node) -> str:
        if isinstance(node, ScalarNode) and node.tag == _STR_TAG:
            return str(node.value)
        if isinstance(node, ScalarNode) and node.tag in _PLAIN_SCALAR_TAGS | {_TIMESTAMP_TAG}:
            self._fail(_line(node), f"mapping key {node.value!r} must be a string; quote it")
        self._fail(_line(node), "mapping keys must be strings")

    def _value(self, node: Node) -> Any:
        """Build the JSON value of a node; anything JSON cannot carry is an error at its line."""
        memo = self._built.get(id(node), _MISSING)
        if memo is not _MISSING:
            return memo
        if id(node) in self._building:
            self._fail(_line(node), "recursive YAML alias")
        self._building.add(id(node))
        try:
            value = self._build(node)
        finally:
            self._building.discard(id(node))
        self._built[id(node)] = value
        return value

    def _build(self, node: Node) -> Any:
        if isinstance(node, ScalarNode):
            if node.tag == _TIMESTAMP_TAG:
                # JSON has no dates and samples travel as JSON: keep the date as it was written.
                return str(node.value)
            if node.tag not in _PLAIN_SCALAR_TAGS:
                self._fail(_line(node), f"YAML tag {node.tag!r} has no JSON equivalent")
            try:
                value = self._constructor.construct_object(node, deep=True)
            except ConstructorError as exc:
                self._fail(_line(node), f"invalid YAML value: {exc.problem}")
            if isinstance(value, float) and not math.isfinite(value):
                self._fail(_line(node), f"{node.value} is not a JSON number")
            return value
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                self._fail(_line(node), f"YAML tag {node.tag!r} has no JSON equivalent")
            return [self._value(item) for item in node.value]
        if isinstance(node, MappingNode):
            if node.tag != _TAG + "map":
                self._fail(_line(node), f"YAML tag {node.tag!r} has no JSON equivalent")
            return {key: self._value(value_node) for key, (_, value_node) in self._pairs(node).items()}
        self._fail(_line(node), f"unsupported YAML node {type(node).__name__}")


_MISSING = object()
