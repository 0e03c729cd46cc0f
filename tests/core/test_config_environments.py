"""Supervisors with balancing and job settings, environments, and ``evalharness config check``:
every error names the file, the table and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evalharness.cli.config import config as config_group
from evalharness.core.config import (
    DEFAULT_BACKOFF,
    Balance,
    Config,
    ScalingStrategy,
    SupervisorConfig,
    load_config,
)
from evalharness.core.errors import ConfigError
from evalharness.daemon.balancer import initial_sizes

pytestmark = pytest.mark.usefixtures("clean_config_env")


def write(tmp_path: Path, text: str, name: str = "evalharness.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


TWO_ENVIRONMENTS = """
redis_url = "rediss://evals:s3cret@redis.internal:6380/0"

[supervisors.evals]
queues = ["evals-realtime", "evals-batch"]
balance = "auto"
auto_scaling_strategy = "time"
max_processes = 4
timeout = 240
hard_timeout = 300
tries = 5
backoff = [30, 60, 120]

[supervisors.judge]
queues = ["judge"]
processes = 1

[environments.production.supervisors.evals]
min_processes = 2
max_processes = 16
balance_max_shift = 3
balance_cooldown = 8

[environments.production.supervisors.judge]
processes = 4
concurrency = 5

[environments.production.supervisors.reports]
queues = ["reports"]
balance = "simple"
max_processes = 1

[environments.local.supervisors.evals]
max_processes = 2
"""


# --- supervisor settings -----------------------------------------------------------------------


def test_every_supervisor_key_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[supervisors.llm]\n"
        'queues = ["inference-realtime", "inference-batch", "inference-async"]\n'
        'balance = "auto"\n'
        'auto_scaling_strategy = "size"\n'
        "min_processes = 2\n"
        "max_processes = 16\n"
        "balance_max_shift = 3\n"
        "balance_cooldown = 8\n"
        "concurrency = 25\n"
        "timeout = 240\n"
        "hard_timeout = 300.5\n"
        "tries = 5\n"
        "backoff = [30, 60, 120.5]\n"
        "memory = 512\n"
        "max_jobs = 1000\n"
        "max_time = 3600\n"
        "sleep = 5\n"
        "nice = 10\n",
    )
    (sup,) = load_config(path).supervisors
    assert sup == SupervisorConfig(
        name="llm",
        queues=("inference-realtime", "inference-batch", "inference-async"),
        concurrency=25,
        balance=Balance.AUTO,
        auto_scaling_strategy=ScalingStrategy.SIZE,
        min_processes=2,
        max_processes=16,
        balance_max_shift=3,
        balance_cooldown=8.0,
        timeout=240.0,
        hard_timeout=300.5,
        tries=5,
        backoff=(30.0, 60.0, 120.5),
        memory=512.0,
        max_jobs=1000,
        max_time=3600.0,
        sleep=5.0,
        nice=10,
    )
    assert sup.processes == 6, "an auto supervisor starts at its minimum: 2 per queue"
    assert isinstance(sup.timeout, float) and isinstance(sup.backoff[0], float)


def test_defaults_are_filled_in(tmp_path: Path) -> None:
    (sup,) = load_config(write(tmp_path, "[supervisors.evals]\n")).supervisors
    assert sup.queues == ("default",)
    assert (sup.balance, sup.auto_scaling_strategy) == (Balance.OFF, ScalingStrategy.TIME)
    assert (sup.processes, sup.min_processes, sup.max_processes) == (1, 1, 1)
    assert (sup.balance_max_shift, sup.balance_cooldown, sup.concurrency) == (1, 3.0, 10)
    assert (sup.timeout, sup.hard_timeout, sup.tries, sup.backoff) == (60.0, 0.0, 3, DEFAULT_BACKOFF)
    assert (sup.memory, sup.max_jobs, sup.max_time, sup.sleep, sup.nice) == (0.0, 0, 0.0, 1.0, 0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # (processes, min_processes, max_processes)
        ("processes = 3\n", (3, 1, 3)),
        ("max_processes = 3\n", (3, 1, 3)),
        ("processes = 0\n", (0, 0, 0)),
        ('queues = ["a", "b", "c"]\nbalance = "simple"\n', (3, 1, 3)),
        ('queues = ["a", "b", "c"]\nbalance = "simple"\nprocesses = 7\n', (7, 1, 7)),
        ('queues = ["a", "b"]\nbalance = "auto"\n', (2, 1, 2)),
        ('queues = ["a", "b"]\nbalance = "auto"\nmin_processes = 0\nmax_processes = 9\n', (0, 0, 9)),
        ('queues = ["a", "b"]\nbalance = "auto"\nmin_processes = 3\n', (6, 3, 6)),
    ],
)
def test_process_counts_are_derived_from_what_is_given(
    tmp_path: Path, body: str, expected: tuple[int, int, int]
) -> None:
    (sup,) = load_config(write(tmp_path, "[supervisors.s]\n" + body)).supervisors
    assert (sup.processes, sup.min_processes, sup.max_processes) == expected


def test_a_single_backoff_number_is_one_delay(tmp_path: Path) -> None:
    (sup,) = load_config(write(tmp_path, "[supervisors.s]\nbackoff = 10\n")).supervisors
    assert sup.backoff == (10.0,)


def test_supervisors_built_in_code_derive_their_settings_too() -> None:
    fixed = SupervisorConfig(name="evals", queues=("evals",), processes=2, concurrency=20)
    assert (fixed.min_processes, fixed.max_processes, fixed.balance) == (1, 2, Balance.OFF)
    auto = SupervisorConfig("s", ("a", "b"), balance="auto", max_processes=8)  # type: ignore[arg-type]
    assert auto.balance is Balance.AUTO and auto.processes == 2
    assert auto.pool_names == ("a", "b")
    assert fixed.pool_names == ("evals",)
    assert SupervisorConfig("s", ("a", "b")).pool_names == ("a,b",)
    with pytest.raises(ConfigError, match="supervisor 's' key 'min_processes'"):
        SupervisorConfig("s", ("a", "b", "c"), balance="auto", min_processes=2, max_processes=5)  # type: ignore[arg-type]


# --- environments --------------------------------------------------------------------------------


def test_an_environment_overrides_shared_supervisors_key_by_key_and_adds_its_own(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TWO_ENVIRONMENTS), environment="production")
    assert config.environment == "production"
    assert config.environments == ("production", "local")
    evals, judge, reports = config.supervisors
    assert (evals.name, judge.name, reports.name) == ("evals", "judge", "reports")
    # from the shared table
    assert evals.queues == ("evals-realtime", "evals-batch")
    assert (evals.balance, evals.timeout, evals.hard_timeout, evals.tries) == (Balance.AUTO, 240.0, 300.0, 5)
    assert evals.backoff == (30.0, 60.0, 120.0)
    # from the environment
    assert (evals.min_processes, evals.max_processes, evals.balance_max_shift, evals.balance_cooldown) == (
        2,
        16,
        3,
        8.0,
    )
    assert (judge.processes, judge.concurrency) == (4, 5)
    assert (reports.balance, reports.processes) == (Balance.SIMPLE, 1)


def test_shared_supervisors_run_in_every_environment(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TWO_ENVIRONMENTS), environment="local")
    evals, judge = config.supervisors
    assert (evals.min_processes, evals.max_processes) == (1, 2)
    assert judge.processes == 1


def test_the_environment_comes_from_flag_then_env_then_the_file_then_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = 'environment = "local"\n' + TWO_ENVIRONMENTS
    path = write(tmp_path, text)
    assert load_config(path).environment == "local"
    monkeypatch.setenv("EVALHARNESS_ENV", "production")
    assert load_config(path).environment == "production"
    assert load_config(path, environment="local").environment == "local"
    monkeypatch.delenv("EVALHARNESS_ENV")
    assert load_config(write(tmp_path, TWO_ENVIRONMENTS, "plain.toml")).environment == "production"


def test_without_environments_the_supervisors_apply_to_any_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[supervisors.evals]\nqueues = ["evals"]\nprocesses = 2\n')
    monkeypatch.setenv("EVALHARNESS_ENV", "staging")
    config = load_config(path)
    assert config.environment == "staging"
    assert [s.name for s in config.supervisors] == ["evals"]
    assert config.environments == ()


def test_without_a_file_the_environment_is_still_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config() == Config()
    assert load_config().environment == "production"
    monkeypatch.setenv("EVALHARNESS_ENV", "staging")
    assert load_config().environment == "staging"
    assert load_config(environment="local").environment == "local"


def test_the_default_environment_need_not_be_defined(tmp_path: Path) -> None:
    text = "[supervisors.evals]\n\n[environments.staging.supervisors.evals]\nprocesses = 3\n"
    config = load_config(write(tmp_path, text))
    assert config.environment == "production"
    assert [(s.name, s.processes) for s in config.supervisors] == [("evals", 1)]


@pytest.mark.parametrize(
    ("how", "fragments"),
    [
        ("flag", ["'prod'", "from --environment", "defined: local, production"]),
        ("env", ["'prod'", "from EVALHARNESS_ENV", "defined: local, production"]),
        ("file", ["'prod'", "from the file's key 'environment'", "defined: local, production"]),
    ],
)
def test_a_chosen_environment_the_file_does_not_define_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, fragments: list[str]
) -> None:
    text = ('environment = "prod"\n' if how == "file" else "") + TWO_ENVIRONMENTS
    path = write(tmp_path, text)
    if how == "env":
        monkeypatch.setenv("EVALHARNESS_ENV", "prod")
    with pytest.raises(ConfigError) as err:
        load_config(path, environment="prod" if how == "flag" else None)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message, message


def test_a_file_naming_an_environment_it_does_not_define_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'staging'.*defined: none"):
        load_config(write(tmp_path, 'environment = "staging"\n[supervisors.evals]\n'))


def test_every_environment_is_validated_not_only_the_chosen_one(tmp_path: Path) -> None:
    text = TWO_ENVIRONMENTS + "\n[environments.staging.supervisors.evals]\nmin_processes = 3\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environment="production")
    assert "[environments.staging.supervisors.evals] key 'min_processes'" in str(err.value)


def test_processes_and_max_processes_replace_each_other_across_tables(tmp_path: Path) -> None:
    text = (
        "[supervisors.evals]\nprocesses = 2\n\n"
        "[environments.production.supervisors.evals]\nmax_processes = 6\n\n"
        "[environments.local.supervisors.evals]\nconcurrency = 3\n"
    )
    path = write(tmp_path, text)
    assert load_config(path, environment="production").supervisors[0].processes == 6
    assert load_config(path, environment="local").supervisors[0].processes == 2


# --- errors --------------------------------------------------------------------------------------

SUP = "[supervisors.evals]\n"
ENV_SUP = "[environments.production.supervisors.evals]\n"
T = "[supervisors.evals]"
ET = "[environments.production.supervisors.evals]"

ERRORS = [
    # unknown keys, with a hint
    ("camel-case", SUP + "maxProcesses = 4\n", [T, "unknown key 'maxProcesses'", "did you mean 'max_processes'"]),
    ("typo", SUP + "balanse = 'auto'\n", [T, "unknown key 'balanse'", "did you mean 'balance'"]),
    (
        "env-unknown-key",
        "[environments.production]\nredis_url = 'x'\n",
        ["[environments.production]", "unknown key 'redis_url'"],
    ),
    ("env-sup-unknown-key", ENV_SUP + "proceses = 2\n", [ET, "unknown key 'proceses'"]),
    # wrong types
    ("balance-bool", SUP + "balance = false\n", [T, "'balance'", "string"]),
    ("balance-value", SUP + "balance = 'smart'\n", [T, "'balance'", "'off', 'simple', 'auto'", "'smart'"]),
    ("strategy-value", SUP + "auto_scaling_strategy = 'length'\n", [T, "'auto_scaling_strategy'", "'time', 'size'"]),
    ("min-float", SUP + "min_processes = 1.5\n", [T, "'min_processes'", "integer"]),
    ("max-string", SUP + "max_processes = '4'\n", [T, "'max_processes'", "integer"]),
    ("shift-bool", SUP + "balance_max_shift = true\n", [T, "'balance_max_shift'", "integer"]),
    ("cooldown-string", SUP + "balance_cooldown = '3s'\n", [T, "'balance_cooldown'", "number"]),
    ("timeout-bool", SUP + "timeout = true\n", [T, "'timeout'", "number"]),
    ("tries-float", SUP + "tries = 2.5\n", [T, "'tries'", "integer"]),
    ("backoff-string", SUP + "backoff = '30'\n", [T, "'backoff'", "number"]),
    ("backoff-list-string", SUP + "backoff = [30, '60']\n", [T, "'backoff'", "number"]),
    ("memory-string", SUP + "memory = '512M'\n", [T, "'memory'", "number"]),
    ("max-jobs-float", SUP + "max_jobs = 1.5\n", [T, "'max_jobs'", "integer"]),
    ("sleep-string", SUP + "sleep = 'x'\n", [T, "'sleep'", "number"]),
    ("nice-float", SUP + "nice = 1.5\n", [T, "'nice'", "integer"]),
    ("cooldown-inf", SUP + "balance_cooldown = inf\n", [T, "'balance_cooldown'", "finite"]),
    ("timeout-nan", SUP + "timeout = nan\n", [T, "'timeout'", "finite"]),
    # negative and out of range
    ("min-negative", SUP + "min_processes = -1\n", [T, "'min_processes'", ">= 0"]),
    ("max-negative", SUP + "max_processes = -1\n", [T, "'max_processes'", ">= 0"]),
    ("shift-zero", SUP + "balance_max_shift = 0\n", [T, "'balance_max_shift'", ">= 1"]),
    ("cooldown-negative", SUP + "balance_cooldown = -1\n", [T, "'balance_cooldown'", ">= 0"]),
    ("timeout-negative", SUP + "timeout = -5\n", [T, "'timeout'", ">= 0"]),
    ("hard-timeout-negative", SUP + "hard_timeout = -5\n", [T, "'hard_timeout'", ">= 0"]),
    ("tries-negative", SUP + "tries = -1\n", [T, "'tries'", ">= 0"]),
    ("backoff-negative", SUP + "backoff = [1, -2]\n", [T, "'backoff'", ">= 0"]),
    ("backoff-empty", SUP + "backoff = []\n", [T, "'backoff'", "at least one"]),
    ("memory-negative", SUP + "memory = -1\n", [T, "'memory'", ">= 0"]),
    ("max-jobs-negative", SUP + "max_jobs = -1\n", [T, "'max_jobs'", ">= 0"]),
    ("max-time-negative", SUP + "max_time = -1\n", [T, "'max_time'", ">= 0"]),
    ("sleep-zero", SUP + "sleep = 0\n", [T, "'sleep'", "> 0"]),
    ("nice-negative", SUP + "nice = -5\n", [T, "'nice'", "0 and 19"]),
    ("nice-high", SUP + "nice = 20\n", [T, "'nice'", "0 and 19"]),
    # impossible combinations
    (
        "min-times-queues-over-max",
        SUP + "queues = ['a', 'b', 'c']\nbalance = 'auto'\nmin_processes = 2\nmax_processes = 5\n",
        [T, "'min_processes'", "2 (given) per queue x 3 queues = 6", "max_processes 5"],
    ),
    (
        "default-min-over-max",
        SUP + "queues = ['a', 'b', 'c']\nbalance = 'simple'\nmax_processes = 2\n",
        [T, "'min_processes'", "(the default)", "max_processes 2"],
    ),
    ("off-min-over-max", SUP + "min_processes = 3\nmax_processes = 2\n", [T, "'min_processes'", "max_processes 2"]),
    (
        "timeout-not-below-hard",
        SUP + "timeout = 300\nhard_timeout = 300\n",
        [T, "'timeout'", "not below hard_timeout 300"],
    ),
    ("no-timeout-with-hard", SUP + "timeout = 0\nhard_timeout = 300\n", [T, "'timeout'", "no timeout"]),
    (
        "processes-with-auto",
        SUP + "balance = 'auto'\nprocesses = 4\n",
        [T, "'processes'", "min_processes", "max_processes"],
    ),
    ("processes-and-max", SUP + "processes = 4\nmax_processes = 6\n", [T, "'processes'", "not both"]),
    ("duplicate-queue", SUP + "queues = ['a', 'b', 'a']\n", [T, "'queues'", "'a' more than once"]),
    # tables
    ("environments-not-table", "environments = 3\n", ["[environments]", "table"]),
    ("environment-not-table", "[environments]\nproduction = 3\n", ["[environments.production]", "table"]),
    (
        "env-supervisors-not-table",
        "[environments.production]\nsupervisors = 3\n",
        ["[environments.production.supervisors]", "table"],
    ),
    ("env-supervisor-not-table", "[environments.production.supervisors]\nevals = 3\n", [ET, "table"]),
    ("environment-name", '[environments."prod env"]\n', ["[environments.prod env]", "'prod env'"]),
    (
        "env-supervisor-name",
        '[environments.production.supervisors."a b"]\n',
        ["[environments.production.supervisors.a b]", "'a b'"],
    ),
    ("environment-key-type", "environment = 1\n", ["'environment'", "string"]),
    ("environment-key-name", "environment = 'a:b'\n", ["'environment'", "'a:b'"]),
    ("env-supervisor-bad-value", ENV_SUP + "balance = 'smart'\n", [ET, "'balance'", "'smart'"]),
]


@pytest.mark.parametrize(("text", "fragments"), [pytest.param(t, f, id=i) for i, t, f in ERRORS])
def test_errors_name_the_file_the_table_and_the_key(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("shared", "env", "table", "key"),
    [
        # the environment set the key that broke the combination: name the environment's table
        ("queues = ['a', 'b']\nbalance = 'auto'\nmax_processes = 4\n", "min_processes = 3\n", ET, "min_processes"),
        ("timeout = 100\n", "hard_timeout = 50\n", T, "timeout"),
        ("hard_timeout = 50\ntimeout = 40\n", "timeout = 100\n", ET, "timeout"),
        ("max_processes = 4\n", "balance = 'auto'\nprocesses = 2\n", ET, "processes"),
    ],
)
def test_a_merged_supervisor_error_names_the_table_that_set_the_key(
    tmp_path: Path, shared: str, env: str, table: str, key: str
) -> None:
    path = write(tmp_path, SUP + shared + "\n" + ENV_SUP + env)
    with pytest.raises(ConfigError) as err:
        load_config(path, environment="production")
    assert f"{path}: table {table} key '{key}'" in str(err.value)


# --- evalharness config check ---------------------------------------------------------------------


def run_check(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(config_group, ["check", *args])
    return result.exit_code, result.stdout, result.stderr


def test_check_prints_the_resolved_supervisors_as_json(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_ENVIRONMENTS)
    code, out, _ = run_check(str(path), "--environment", "production", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["file"] == str(path)
    assert data["environment"] == "production"
    assert data["environments"] == ["production", "local"]
    assert data["redis_url"] == "rediss://evals:***@redis.internal:6380/0", "the password is never printed"
    assert data["prefix"] == "eh"
    evals, judge, reports = data["supervisors"]
    assert evals == {
        "name": "evals",
        "queues": ["evals-realtime", "evals-batch"],
        "processes": 4,
        "concurrency": 10,
        "balance": "auto",
        "auto_scaling_strategy": "time",
        "min_processes": 2,
        "max_processes": 16,
        "balance_max_shift": 3,
        "balance_cooldown": 8.0,
        "timeout": 240.0,
        "hard_timeout": 300.0,
        "tries": 5,
        "backoff": [30.0, 60.0, 120.0],
        "memory": 0.0,
        "max_jobs": 0,
        "max_time": 0.0,
        "sleep": 1.0,
        "nice": 0,
        "pools_at_start": {"evals-realtime": 2, "evals-batch": 2},
    }
    assert judge["pools_at_start"] == {"judge": 4}
    assert reports["pools_at_start"] == {"reports": 1}


def test_check_prints_a_table_for_people(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_ENVIRONMENTS)
    code, out, _ = run_check(str(path), "--environment", "local")
    assert code == 0
    assert "local" in out and "production, local" in out
    assert "s3cret" not in out
    for text in ("evals", "judge", "balance_cooldown", "auto", "30s, 60s, 120s", "no limit", "evals-realtime=1"):
        assert text in out, text
    assert "reports" not in out, "a supervisor of another environment"


def test_check_exits_2_with_the_error_for_an_invalid_file(tmp_path: Path) -> None:
    path = write(tmp_path, SUP + "balance = 'auto'\nmin_processes = 5\nmax_processes = 4\n")
    code, out, err = run_check(str(path))
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {path}: table [supervisors.evals] key 'min_processes'")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--environment", "staging"], "environment 'staging'"),
        (["--environment", "bad name"], "invalid environment name"),
    ],
)
def test_check_exits_2_for_an_unknown_environment(tmp_path: Path, args: list[str], fragment: str) -> None:
    code, _, err = run_check(str(write(tmp_path, TWO_ENVIRONMENTS)), *args)
    assert code == 2
    assert fragment in err


def test_check_finds_the_file_like_every_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_check()
    assert code == 2 and "no configuration file" in err
    code, _, err = run_check(str(tmp_path / "missing.toml"))
    assert code == 2 and "not found" in err
    Path("evalharness.toml").write_text("[supervisors.here]\n")
    code, out, _ = run_check("--json")
    assert code == 0 and json.loads(out)["supervisors"][0]["name"] == "here"
    monkeypatch.setenv("EVALHARNESS_CONFIG", str(write(tmp_path, "[supervisors.fromenv]\n", "env.toml")))
    code, out, _ = run_check("--json")
    assert code == 0 and json.loads(out)["supervisors"][0]["name"] == "fromenv"


def test_check_says_when_a_file_has_no_supervisors(tmp_path: Path) -> None:
    code, out, _ = run_check(str(write(tmp_path, 'prefix = "p"\n')))
    assert code == 0
    assert "no supervisors" in out


def test_check_help_documents_the_exit_codes() -> None:
    result = CliRunner().invoke(config_group, ["check", "--help"])
    assert result.exit_code == 0
    assert "Exit codes: 0" in result.output and "2" in result.output


def test_a_shared_supervisor_must_be_valid_on_its_own(tmp_path: Path) -> None:
    # it runs in every environment that does not override it, and when none is defined
    text = SUP + "queues = ['a', 'b', 'c']\nbalance = 'auto'\nmax_processes = 2\n\n" + ENV_SUP + "max_processes = 9\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environment="production")
    assert f"table {T} key 'min_processes'" in str(err.value)


def test_the_documented_example_is_valid_and_does_what_the_docs_say(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    text = docs.read_text()
    example = text.split("# evalharness.toml\n", 1)[1].split("```", 1)[0]
    path = write(tmp_path, example)
    prod = {s.name: s for s in load_config(path, environment="production").supervisors}
    assert list(prod) == ["inference", "standard", "judge"]
    assert (prod["inference"].processes, prod["inference"].max_processes) == (4, 16)
    assert initial_sizes(prod["standard"]) == {"default": 4, "webhooks": 4}
    assert prod["judge"].processes == 2
    local = load_config(path)
    assert local.environment == "local"
    sups = {s.name: s for s in local.supervisors}
    assert list(sups) == ["inference", "standard"]
    assert (sups["inference"].min_processes, sups["inference"].max_processes) == (0, 2)
    assert initial_sizes(sups["standard"]) == {"default": 1, "webhooks": 1}
