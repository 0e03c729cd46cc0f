"""Run profiles: explicit flags win over the profile, the profile over the defaults, ``none``
clears an inherited value, and every mistake in a profile names the file, table and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalharness.core.config import load_config
from evalharness.core.errors import ConfigError, EvalHarnessError
from evalharness.core.profiles import BUILTIN, DEFAULTS, NONE, all_profiles, check_profile_tables, resolve


def test_without_a_profile_the_flags_and_defaults_are_the_run() -> None:
    got = resolve(None, {}, {"concurrency": 7}, {"concurrency"})
    assert got.values == {**DEFAULTS, "concurrency": 7}
    assert got.sources["concurrency"] == "flag" and got.sources["timeout"] == "default"


def test_a_builtin_profile_gives_its_values_and_an_explicit_flag_wins() -> None:
    got = resolve("ci", {}, {"concurrency": 3, "timeout": 60.0}, {"concurrency"})
    assert got.values["concurrency"] == 3  # the flag
    assert got.values["timeout"] == BUILTIN["ci"]["timeout"] == 30.0  # the profile: --timeout was not given
    assert got.values["batch_timeout"] == 1800.0
    assert got.to_json() == {"name": "ci", "values": {"timeout": 30.0, "tries": 2, "batch_timeout": 1800.0}}


def test_none_clears_an_inherited_value_from_a_flag_or_from_the_file() -> None:
    # on the command line: --batch-timeout none drops ci's 30-minute bound, --timeout none is the default
    got = resolve("ci", {}, {"batch_timeout": NONE, "timeout": NONE}, {"batch_timeout", "timeout"})
    assert got.values["batch_timeout"] is None and got.values["timeout"] == DEFAULTS["timeout"] == 60.0
    # in the file: the smoke profile without its limit
    from_file = check_profile_tables({"smoke": {"limit": "none", "tries": 2}}, "eh.toml")
    got = resolve("smoke", from_file, {}, set())
    assert got.values["limit"] is None and got.values["tries"] == 2 and got.values["mode"] == "serial"


def test_a_queue_may_be_called_none() -> None:
    got = resolve(None, {}, {"queue": "none"}, {"queue"})
    assert got.values["queue"] == "none"


def test_the_file_overrides_builtins_key_by_key_and_adds_its_own() -> None:
    from_file = check_profile_tables(
        {"nightly": {"concurrency": 8}, "mine": {"metrics": ["exact-match", "contains"], "repetitions": 2}}, "f.toml"
    )
    merged = all_profiles(from_file)
    assert merged["nightly"] == {**BUILTIN["nightly"], "concurrency": 8}
    got = resolve("mine", from_file, {"metrics": ()}, set())
    assert got.values["metrics"] == ("exact-match", "contains") and got.values["repetitions"] == 2


def test_an_unknown_profile_names_the_flag_and_the_profiles_there_are() -> None:
    with pytest.raises(EvalHarnessError) as err:
        resolve("nighlty", {"team": {}}, {}, set(), "eh.toml")
    assert str(err.value) == "--profile 'nighlty': no such profile (built in: ci, nightly, smoke; in eh.toml: team)"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "[profiles.fast]\nconcurency = 3\n",
            "{path}: table [profiles.fast]: unknown key 'concurency'; did you mean 'concurrency'?",
        ),
        (
            "[profiles.fast]\nconcurrency = 0\n",
            "{path}: table [profiles.fast]: key 'concurrency': expected an integer >= 1 or \"none\", got 0",
        ),
        (
            '[profiles.fast]\ntimeout = "soon"\n',
            "{path}: table [profiles.fast]: key 'timeout': expected a number > 0 or \"none\", got 'soon'",
        ),
        (
            '[profiles.fast]\nmode = "parallel"\n',
            "{path}: table [profiles.fast]: key 'mode': "
            "expected one of serial, lazy-parallel or \"none\", got 'parallel'",
        ),
        (
            "[profiles.fast]\nmetrics = []\n",
            "{path}: table [profiles.fast]: key 'metrics': expected a list of metric names (or \"none\"), got []",
        ),
        ("[profiles]\nfast = 3\n", "{path}: table [profiles.fast]: expected a table of run options, got int 3"),
    ],
)
def test_a_bad_profile_in_the_file_names_file_table_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "eh.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(message.format(path=path))
    assert err.value.exit_code == 2
