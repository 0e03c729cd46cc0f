"""Settings resolution (flag, environment, config file, default) and config file errors that
name the file, the table and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalharness.core.config import (
    Config,
    SupervisorConfig,
    load_config,
    resolve_settings,
    validate_name,
)
from evalharness.core.errors import ConfigError

pytestmark = pytest.mark.usefixtures("clean_config_env")


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("flag", "env", "in_file", "expected"),
    [
        ("redis://flag:1/0", "redis://env:2/0", "redis://file:3/0", "redis://flag:1/0"),
        (None, "redis://env:2/0", "redis://file:3/0", "redis://env:2/0"),
        (None, None, "redis://file:3/0", "redis://file:3/0"),
        ("redis://flag:1/0", None, "redis://file:3/0", "redis://flag:1/0"),
        ("redis://flag:1/0", None, None, "redis://flag:1/0"),
        (None, "redis://env:2/0", None, "redis://env:2/0"),
        (None, None, None, "embedded"),
    ],
    ids=["flag-beats-all", "env-beats-file", "file", "flag-beats-file", "flag", "env", "embedded"],
)
def test_the_redis_url_comes_from_flag_then_env_then_file_then_the_embedded_server(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: str | None,
    env: str | None,
    in_file: str | None,
    expected: str,
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("EVALHARNESS_STATE_DIR", str(state))
    if env:
        monkeypatch.setenv("EVALHARNESS_REDIS_URL", env)
    if in_file:
        write_config(Path("evalharness.toml"), f'redis_url = "{in_file}"\n')
    settings = resolve_settings(redis_url=flag, start_embedded=False)
    if expected == "embedded":
        assert settings.embedded
        assert settings.redis_url == f"unix://{state.resolve()}/redis.sock"
        assert settings.state_dir == state
    else:
        assert not settings.embedded
        assert settings.redis_url == expected
    assert not state.exists(), "resolving settings without start_embedded must not start anything"


def test_the_prefix_comes_from_flag_then_env_then_file_then_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    env_url = "redis://localhost:1/0"
    monkeypatch.setenv("EVALHARNESS_REDIS_URL", env_url)
    assert resolve_settings(start_embedded=False).prefix == "eh"
    write_config(Path("evalharness.toml"), 'prefix = "fromfile"\n')
    assert resolve_settings(start_embedded=False).prefix == "fromfile"
    monkeypatch.setenv("EVALHARNESS_PREFIX", "fromenv")
    assert resolve_settings(start_embedded=False).prefix == "fromenv"
    assert resolve_settings(prefix="fromflag", start_embedded=False).prefix == "fromflag"
    with pytest.raises(ConfigError, match="prefix"):
        resolve_settings(prefix="bad prefix", start_embedded=False)


def test_the_state_dir_comes_from_env_then_file_then_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert resolve_settings(start_embedded=False).state_dir == tmp_path / "xdg" / "evalharness"
    write_config(Path("evalharness.toml"), f'state_dir = "{tmp_path / "fromfile"}"\n')
    settings = resolve_settings(start_embedded=False)
    assert settings.state_dir == tmp_path / "fromfile"
    assert settings.redis_url == f"unix://{(tmp_path / 'fromfile').resolve()}/redis.sock"
    monkeypatch.setenv("EVALHARNESS_STATE_DIR", str(tmp_path / "fromenv"))
    settings = resolve_settings(start_embedded=False)
    assert settings.state_dir == tmp_path / "fromenv"
    assert settings.redis_url == f"unix://{(tmp_path / 'fromenv').resolve()}/redis.sock"


def test_job_modules_from_file_env_and_flags_are_all_imported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALHARNESS_REDIS_URL", "redis://localhost:1/0")
    write_config(Path("evalharness.toml"), 'imports = ["a.jobs", "shared"]\n')
    monkeypatch.setenv("EVALHARNESS_IMPORTS", "b.jobs, shared,")
    settings = resolve_settings(imports=("c.jobs", "a.jobs"), start_embedded=False)
    assert settings.imports == ("a.jobs", "shared", "b.jobs", "c.jobs")


def test_a_full_config_file_is_read_with_defaults_filled_in(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "eh.toml",
        'redis_url = "rediss://user:pw@host:6380/1"\n'
        'prefix = "evals-prod"\n'
        'state_dir = "~/eh-state"\n'
        'imports = ["myproj.jobs"]\n'
        "\n"
        "[supervisors.evals]\n"
        'queues = ["evals", "evals-low"]\n'
        "processes = 4\n"
        "concurrency = 40\n"
        "\n"
        "[supervisors.idle]\n"
        "processes = 0\n",
    )
    config = load_config(path)
    assert config.path == path
    assert config.redis_url == "rediss://user:pw@host:6380/1"
    assert config.prefix == "evals-prod"
    assert config.state_dir == Path.home() / "eh-state"
    assert config.imports == ("myproj.jobs",)
    assert config.supervisors == (
        SupervisorConfig("evals", ("evals", "evals-low"), 4, 40),
        SupervisorConfig("idle", ("default",), 0, 10),
    )


def test_the_config_file_is_the_flag_then_env_then_the_one_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no file anywhere: defaults, no error
    assert load_config() == Config()
    here = write_config(Path("evalharness.toml"), 'prefix = "here"\n')
    assert load_config().prefix == "here"
    assert load_config().path is not None and load_config().path.resolve() == here.resolve()
    from_env = write_config(tmp_path / "env.toml", 'prefix = "env"\n')
    monkeypatch.setenv("EVALHARNESS_CONFIG", str(from_env))
    assert load_config().prefix == "env"
    from_flag = write_config(tmp_path / "flag.toml", 'prefix = "flag"\n')
    assert load_config(from_flag).prefix == "flag"
    assert load_config(str(from_flag)).prefix == "flag"


def test_a_named_config_file_that_does_not_exist_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as err:
        load_config(missing)
    assert str(missing) in str(err.value)
    monkeypatch.setenv("EVALHARNESS_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="not found"):
        load_config()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


SUP = "[supervisors.evals]\n"


CONFIG_ERRORS = [
    ("unknown-key", 'reddis_url = "redis://x"\n', ["unknown key 'reddis_url'", "redis_url"]),
    ("unknown-supervisor-key", SUP + "proceses = 2\n", ["[supervisors.evals]", "unknown key 'proceses'", "processes"]),
    ("processes-string", SUP + 'processes = "2"\n', ["[supervisors.evals]", "'processes'", "integer"]),
    ("processes-bool", SUP + "processes = true\n", ["[supervisors.evals]", "'processes'", "integer"]),
    ("processes-float", SUP + "processes = 1.5\n", ["[supervisors.evals]", "'processes'", "integer"]),
    ("processes-negative", SUP + "processes = -1\n", ["[supervisors.evals]", "'processes'", ">= 0"]),
    ("concurrency-zero", SUP + "concurrency = 0\n", ["[supervisors.evals]", "'concurrency'", ">= 1"]),
    ("queues-string", SUP + 'queues = "evals"\n', ["[supervisors.evals]", "'queues'", "list"]),
    ("queues-empty", SUP + "queues = []\n", ["[supervisors.evals]", "'queues'", "at least one"]),
    ("queue-space", SUP + 'queues = ["evals", "my queue"]\n', ["[supervisors.evals]", "'queues'", "'my queue'"]),
    ("queue-hash-tag", SUP + 'queues = ["a{b}"]\n', ["[supervisors.evals]", "'queues'", "'a{b}'"]),
    ("queue-newline", SUP + 'queues = ["evals\\n"]\n', ["[supervisors.evals]", "'queues'", "'evals\\n'"]),
    ("queue-number", SUP + "queues = [1]\n", ["[supervisors.evals]", "'queues'", "1"]),
    ("supervisor-name", '[supervisors."my sup"]\nprocesses = 1\n', ["[supervisors.my sup]", "'my sup'"]),
    ("supervisors-not-table", "supervisors = 3\n", ["[supervisors]", "table"]),
    ("supervisor-not-table", "[supervisors]\nevals = 3\n", ["[supervisors.evals]", "table"]),
    ("redis-url-number", "redis_url = 6379\n", ["'redis_url'", "string"]),
    ("prefix-colon", 'prefix = "eh:prod"\n', ["'prefix'", "'eh:prod'"]),
    ("imports-string", 'imports = "myproj.jobs"\n', ["'imports'", "list"]),
    ("imports-number", "imports = [1]\n", ["'imports'", "module"]),
    ("state-dir-number", "state_dir = 1\n", ["'state_dir'", "string"]),
    ("toml-syntax", "[supervisors.evals\nprocesses = 2\n", ["not valid TOML", "line 1"]),
    ("toml-duplicate", 'prefix = "a"\nprefix = "b"\n', ["not valid TOML", "line 2"]),
]


@pytest.mark.parametrize(("text", "fragments"), [pytest.param(t, f, id=i) for i, t, f in CONFIG_ERRORS])
def test_config_file_errors_name_the_file_the_table_and_the_key(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write_config(tmp_path / "evalharness.toml", text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert err.value.exit_code == 2


def test_a_file_that_is_not_utf8_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "evalharness.toml"
    path.write_bytes(b'prefix = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["evals", "evals-2", "a.b_c", "X"])
def test_plain_names_are_accepted(name: str) -> None:
    assert validate_name("queue", name) == name


@pytest.mark.parametrize("name", ["", "a b", "a:b", "a{b}", "evals\n", "\nevals", "é"])
def test_names_that_would_break_redis_keys_are_rejected(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid queue name"):
        validate_name("queue", name)
