"""The text metrics against their definitions in METRICS.md §1–2, on tricky data, and metric lookup."""

from __future__ import annotations

import random
from typing import Any

import pytest

from evalharness.core.datasets import Sample
from evalharness.core.errors import MetricError
from evalharness.core.scorers import (
    METRIC_NAMES,
    Contains,
    ExactMatch,
    Regex,
    RougeL,
    ScoreError,
    get_definition,
    get_scorer,
    resolve_metrics,
    rouge_l,
    rouge_tokens,
)

NFC_E = "\u00e9"  # é as one code point
NFD_E = "e\u0301"  # é as e + combining acute


def sample(expected: Any = "") -> Sample:
    return Sample(id="s1", input="q", expected_output=expected, metadata={}, line=1)


def score(metric: str, output: str, expected: Any) -> float:
    return get_scorer(metric).score(output, expected, sample(expected))


def score_error(metric: str, output: Any, expected: Any) -> ScoreError:
    with pytest.raises(ScoreError) as info:
        get_scorer(metric).score(output, expected, sample(expected))
    return info.value


# --- exact-match -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected", "want"),
    [
        ("", "", 1.0),
        ("Paris", "Paris", 1.0),
        ("Paris", "paris", 0.0),
        ("Paris ", "Paris", 0.0),  # no trimming
        ("Paris\n", "Paris", 0.0),
        ("   ", "   ", 1.0),
        ("   ", "  ", 0.0),
        (NFC_E, NFD_E, 0.0),  # no Unicode normalisation
        (NFD_E, NFD_E, 1.0),
        ("東京", "東京", 1.0),
        ("👍🏽", "👍", 0.0),
        ("", " ", 0.0),
    ],
)
def test_exact_match_compares_code_points(output: str, expected: str, want: float) -> None:
    assert score("exact-match", output, expected) == want
    assert score("exact-match", output, expected) == float(output == expected)


# --- contains ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected", "want"),
    [
        ("The capital is Paris.", "Paris", 1.0),
        ("The capital is paris.", "Paris", 0.0),  # case-sensitive
        ("Paris", "Paris", 1.0),
        ("Pa", "Paris", 0.0),  # expected longer than output
        ("a b", " ", 1.0),  # whitespace-only expected is not empty
        ("ab", " ", 0.0),
        ("", " ", 0.0),
        ("line1\nline2", "1\nl", 1.0),
        (f"caf{NFC_E}", f"caf{NFD_E}", 0.0),
        (f"caf{NFD_E}", "e", 1.0),  # NFD é contains a plain e
        ("東京タワー", "京タ", 1.0),
        ("aaa", "aa", 1.0),
    ],
)
def test_contains_is_a_case_sensitive_substring_test(output: str, expected: str, want: float) -> None:
    assert score("contains", output, expected) == want
    assert score("contains", output, expected) == float(expected in output)


def test_contains_with_empty_expected_is_an_error_not_a_pass() -> None:
    err = score_error("contains", "anything", "")
    assert err.kind == "empty-expected"
    assert "empty" in str(err)
    assert err.message == str(err)


# --- type errors shared by the text metrics ----------------------------------------------------


@pytest.mark.parametrize("metric", ["exact-match", "contains", "rouge-l", "regex"])
@pytest.mark.parametrize(
    ("expected", "type_name"),
    [
        (42, "number"),
        (1.5, "number"),
        (True, "boolean"),
        (None, "null"),
        (["a"], "list"),
        ({"a": 1}, "object"),
    ],
)
def test_non_string_expected_is_an_error_naming_the_type(metric: str, expected: Any, type_name: str) -> None:
    err = score_error(metric, "42", expected)
    assert err.kind == "invalid-expected"
    assert type_name in err.message
    assert metric in err.message


@pytest.mark.parametrize("metric", ["exact-match", "contains", "rouge-l", "regex"])
def test_non_string_output_is_an_invalid_output_error(metric: str) -> None:
    err = score_error(metric, {"answer": "x"}, "/x/" if metric == "regex" else "x")
    assert err.kind == "invalid-output"
    assert "object" in err.message


# --- rouge-l -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", []),
        ("!!! ... ???", []),
        ("Hello, World!", ["hello", "world"]),
        ("snake_case", ["snake", "case"]),  # underscore separates
        ("a\u00a0b\u200bc", ["a", "b", "c"]),  # NBSP and zero-width space separate
        ("hi👍there", ["hi", "there"]),  # emoji separate
        ("caf" + NFD_E, ["cafe"]),  # the combining mark ends the token
        ("caf" + NFD_E + "s", ["cafe", "s"]),
        ("CAFÉ", ["café"]),
        ("\u0130stanbul", ["i", "stanbul"]),  # İ lowers to i + combining dot above
        ("\u212a", ["k"]),  # Kelvin sign
        ("STRASSE Straße", ["strasse", "straße"]),  # lower(), not casefold()
        ("ΟΔΟΣ", ["οδος"]),  # final sigma
        ("東京タワー 서울 ภาษาไทย", ["東京タワー", "서울", "ภาษาไทย"]),
        ("x² ½ ٣ Ⅻ", ["x²", "½", "٣", "ⅻ"]),
        ("v1.2-rc3", ["v1", "2", "rc3"]),
    ],
)
def test_rouge_tokens_are_runs_of_unicode_letters_and_numbers(text: str, tokens: list[str]) -> None:
    assert rouge_tokens(text) == tokens


def test_rouge_l_known_values() -> None:
    result = rouge_l("the cat sat on the mat", "the cat is on the mat")
    assert result.lcs == 5
    assert result.precision == pytest.approx(5 / 6, abs=1e-12)
    assert result.recall == pytest.approx(5 / 6, abs=1e-12)
    assert result.fmeasure == pytest.approx(5 / 6, abs=1e-12)

    result = rouge_l("a b c d", "A, C!")
    assert (result.lcs, result.precision, result.recall) == (2, 0.5, 1.0)
    assert result.fmeasure == pytest.approx(2 / 3, abs=1e-12)

    assert rouge_l("b a", "a b").fmeasure == pytest.approx(0.5, abs=1e-12)
    assert rouge_l("x y", "a b").fmeasure == 0.0


@pytest.mark.parametrize(
    ("output", "expected", "want"),
    [
        ("", "", 1.0),  # both sides without tokens
        ("!!!", "🎉", 1.0),
        ("   ", "", 1.0),
        ("answer", "", 0.0),  # exactly one side without tokens
        ("", "answer", 0.0),
        ("ΟΔΟΣ", "οδος", 1.0),
        ("ΟΔΟΣ", "οδοσ", 0.0),
        ("Straße", "STRASSE", 0.0),
        (f"caf{NFC_E}", f"caf{NFD_E}", 0.0),  # ['café'] vs ['cafe']
    ],
)
def test_rouge_l_edge_cases(output: str, expected: str, want: float) -> None:
    assert score("rouge-l", output, expected) == want


def test_rouge_l_token_cap_is_an_error_above_the_limit_only() -> None:
    at_limit = " ".join(["w"] * 1024)
    over = " ".join(["w"] * 1025)
    assert score("rouge-l", at_limit, at_limit) == 1.0
    err = score_error("rouge-l", over, "w")
    assert err.kind == "too-many-tokens"
    assert "1025" in err.message and "1024" in err.message
    assert score_error("rouge-l", "w", over).kind == "too-many-tokens"
    # Punctuation is not a token, so it does not count against the cap.
    assert score("rouge-l", at_limit + " !!! ...", at_limit) == 1.0


def test_rouge_l_cap_is_a_parameter() -> None:
    scorer = RougeL(max_tokens=2)
    assert scorer.score("a b", "a b", sample("a b")) == 1.0
    with pytest.raises(ScoreError):
        scorer.score("a b c", "a", sample("a"))


def _lcs_dp(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def _rouge_reference(output: str, expected: str) -> float:
    out, exp = rouge_tokens(output), rouge_tokens(expected)
    if not out and not exp:
        return 1.0
    if not out or not exp:
        return 0.0
    lcs = _lcs_dp(exp, out)
    p, r = lcs / len(out), lcs / len(exp)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_rouge_l_agrees_with_an_independent_lcs_on_random_token_lists() -> None:
    rng = random.Random(20240601)
    vocabulary = ["a", "b", "c", "É", "é", "東", "1", "ß"]
    for _ in range(500):
        out = [rng.choice(vocabulary) for _ in range(rng.randint(0, 40))]
        exp = [rng.choice(vocabulary) for _ in range(rng.randint(0, 40))]
        output, expected = " ".join(out), ", ".join(exp)
        assert score("rouge-l", output, expected) == pytest.approx(_rouge_reference(output, expected), abs=1e-12)


def test_rouge_l_is_fast_enough_at_the_cap() -> None:
    rng = random.Random(7)
    words = [f"w{rng.randint(0, 50)}" for _ in range(1024)]
    other = [f"w{rng.randint(0, 50)}" for _ in range(1024)]
    got = rouge_l(" ".join(words), " ".join(other))
    assert got.lcs == _lcs_dp(other, words)


# --- regex -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "pattern", "want"),
    [
        ("Your order #4521 shipped", "/order #[0-9]+/i", 1.0),
        ("ORDER #7", "/order #[0-9]+/i", 1.0),
        ("ORDER #7", "/order #[0-9]+/", 0.0),
        ("no number", "/order #[0-9]+/", 0.0),
        ("anything", "//", 1.0),  # empty body matches everything
        ("", "//", 1.0),
        ("a\n", "/a$/", 1.0),  # $ matches before a final newline
        ("a\nb", "/^b/", 0.0),
        ("a\nb", "/^b/m", 1.0),
        ("a\nb", "/a.b/", 0.0),
        ("a\nb", "/a.b/s", 1.0),
        ("ab", "/a b/x", 1.0),
        ("É", f"/{NFC_E}/i", 1.0),  # Unicode semantics always
        ("東京", "/^\\w+$/", 1.0),
        ("東京", "/^\\w+$/u", 1.0),  # u is accepted and changes nothing
        ("x", "/x/imsxu", 1.0),
        ("path a/b here", "#a/b#", 1.0),  # any non-alphanumeric delimiter
        ("a/b", "/a/b/", 1.0),  # body ends at the LAST closing delimiter
        ("(x)", "(\\(x\\))", 1.0),  # bracket delimiters close with their pair
        ("abc", "{b}i", 1.0),
        ("abc", "[B]i", 1.0),
        ("a>b", "<a>b>", 1.0),
    ],
)
def test_regex_matches_delimited_patterns(output: str, pattern: str, want: float) -> None:
    assert score("regex", output, pattern) == want


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("", "empty-pattern"),
        ("abc", "bad-delimiter"),
        ("a/b/a", "bad-delimiter"),
        ("1x1", "bad-delimiter"),
        (f"{NFC_E}x{NFC_E}", "bad-delimiter"),  # Unicode letters count as alphanumeric
        ("\\a\\", "bad-delimiter"),
        (" a ", "bad-delimiter"),
        ("\ta\t", "bad-delimiter"),
        ("/", "missing-closing-delimiter"),
        ("/abc", "missing-closing-delimiter"),
        ("(abc(", "missing-closing-delimiter"),
        ("/abc/g", "unknown-flag"),
        ("/abc/I", "unknown-flag"),
        ("/abc/ i", "unknown-flag"),
        ("/(/", "invalid-pattern"),
        ("/a{2,1}/", "invalid-pattern"),
        ("/(?<n>x)/", "invalid-pattern"),  # PCRE named group syntax is not Python's
    ],
)
def test_regex_pattern_errors_name_their_kind(pattern: str, kind: str) -> None:
    assert score_error("regex", "abc", pattern).kind == kind


# --- lookup ------------------------------------------------------------------------------------


def test_metric_names_and_lookup() -> None:
    assert {"exact-match", "contains", "rouge-l", "regex"} <= set(METRIC_NAMES)
    assert len(METRIC_NAMES) == 23
    assert list(METRIC_NAMES) == sorted(METRIC_NAMES)
    for name in METRIC_NAMES:
        if get_definition(name).provider is None:
            assert get_scorer(name).name == name
    assert isinstance(get_scorer("exact-match"), ExactMatch)
    assert isinstance(get_scorer("contains"), Contains)
    assert isinstance(get_scorer("regex"), Regex)


def test_unknown_metric_suggests_the_closest_name() -> None:
    with pytest.raises(MetricError) as info:
        get_scorer("exact_match")
    message = str(info.value)
    assert message.startswith("unknown metric 'exact_match'; known metrics: answer-containment-at-k, ")
    assert ", contains, cosine-embedding, exact-match, " in message
    assert message.endswith("did you mean 'exact-match'?")
    assert info.value.exit_code == 2


def test_unknown_metric_without_a_close_name_has_no_suggestion() -> None:
    with pytest.raises(MetricError) as info:
        get_scorer("bleu")
    assert "did you mean" not in str(info.value)
    assert "known metrics: " + ", ".join(METRIC_NAMES) in str(info.value)


def test_resolve_metrics_keeps_order_and_drops_duplicates() -> None:
    names = [s.name for s in resolve_metrics(["rouge-l", "exact-match", "rouge-l", "contains"])]
    assert names == ["rouge-l", "exact-match", "contains"]


def test_resolve_metrics_accepts_comma_separated_entries() -> None:
    names = [s.name for s in resolve_metrics(["regex, exact-match", " contains ", "regex"])]
    assert names == ["regex", "exact-match", "contains"]


def test_resolve_metrics_checks_every_name_before_returning() -> None:
    with pytest.raises(MetricError) as info:
        resolve_metrics(["exact-match", "containz"])
    assert str(info.value).startswith("unknown metric 'containz';")
    assert "did you mean 'contains'?" in str(info.value)

    with pytest.raises(MetricError) as info:
        resolve_metrics(["rouge", "exact-match", "bleu"])
    message = str(info.value)
    assert message.startswith("unknown metrics 'rouge', 'bleu'; known metrics:")
    assert "'rouge-l' for 'rouge'" in message


def test_resolve_metrics_needs_at_least_one_name() -> None:
    for names in ([], [""], [" , "]):
        with pytest.raises(MetricError, match="no metrics given"):
            resolve_metrics(names)
