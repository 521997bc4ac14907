"""config.toml: defaults, merging, every kind of error, and the file `bantzd init` writes."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from bantzd.config import (
    DEFAULTS,
    Config,
    Limit,
    LlmConfig,
    NotifyConfig,
    Throttle,
    config_from_mapping,
    default_config_text,
    load_config,
    write_default_config,
)
from bantzd.errors import ConfigError

GiB = 2**30


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path)


def error_of(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data)
    return str(info.value)


# --- defaults -------------------------------------------------------------------------------


def test_defaults() -> None:
    config = config_from_mapping({})
    assert config == Config(
        max_parallel=2,
        stop_grace=30.0,
        nice=10,
        max_interruptions=5,
        probe_interval=5.0,
        scan_interval=2.0,
        report_language="en",
        throttle=Throttle(
            max_load=1.5, min_free_memory=2 * GiB, gpu_max_util=30.0, gpu_min_free_memory=4 * GiB
        ),
        limits={},
        approval_categories=(),
        llm=LlmConfig(
            base_url="http://127.0.0.1:8080/v1",
            model="local",
            fallback_models=(),
            api_key_env="OPENAI_API_KEY",
            context_chars=12000,
            timeout=120.0,
        ),
        notify=NotifyConfig(urls=(), on=("report", "question", "failed")),
    )


def test_defaults_have_the_spec_shape() -> None:
    for key in ("max_parallel", "stop_grace", "nice", "throttle", "limits", "approval"):
        assert key in DEFAULTS
    assert set(DEFAULTS["throttle"]) == {
        "max_load",
        "min_free_memory",
        "gpu_max_util",
        "gpu_min_free_memory",
    }
    assert {"base_url", "model", "fallback_models", "api_key_env"} <= set(DEFAULTS["llm"])
    assert set(DEFAULTS["notify"]) == {"urls", "on"}
    assert DEFAULTS["limits"] == {}
    assert DEFAULTS["approval"] == {"categories": []}


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nope.toml") == config_from_mapping({})


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_text(tmp_path, "") == config_from_mapping({})


def test_config_from_mapping_does_not_change_defaults() -> None:
    before = copy.deepcopy(DEFAULTS)
    config_from_mapping({"throttle": {"max_load": 9}, "limits": {"x": {"concurrent": 1}}})
    assert before == DEFAULTS


# --- merging and forms ----------------------------------------------------------------------


def test_partial_file_is_merged_over_defaults(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        'max_parallel = 4\n[throttle]\nmax_load = 3\n[llm]\nmodel = "qwen"\n',
    )
    assert config.max_parallel == 4
    assert config.nice == 10
    assert config.throttle.max_load == 3.0
    assert config.throttle.min_free_memory == 2 * GiB
    assert config.llm.model == "qwen"
    assert config.llm.base_url == "http://127.0.0.1:8080/v1"


@pytest.mark.parametrize(
    ("value", "seconds"), [('"30s"', 30), ("10", 10), ("2.5", 2.5), ('"1m30s"', 90), ('"0"', 0)]
)
def test_stop_grace_forms(tmp_path: Path, value: str, seconds: float) -> None:
    assert load_text(tmp_path, f"stop_grace = {value}\n").stop_grace == seconds


def test_sub_second_scan_interval(tmp_path: Path) -> None:
    assert load_text(tmp_path, 'scan_interval = "0.5s"\n').scan_interval == 0.5
    assert load_text(tmp_path, 'probe_interval = "500ms"\n').probe_interval == 0.5


@pytest.mark.parametrize(
    ("value", "size"), [('"1GiB"', GiB), ("1073741824", GiB), ('"2GB"', 2 * 10**9), ("0", 0)]
)
def test_size_forms(tmp_path: Path, value: str, size: int) -> None:
    config = load_text(tmp_path, f"[throttle]\nmin_free_memory = {value}\n")
    assert config.throttle.min_free_memory == size


def test_limits(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        "[limits.llm]\nper_minute = 50\nconcurrent = 2\n[limits.openai]\nper_hour = 1000\n",
    )
    assert dict(config.limits) == {
        "llm": Limit(name="llm", per_minute=50, per_hour=None, concurrent=2),
        "openai": Limit(name="openai", per_minute=None, per_hour=1000, concurrent=None),
    }


def test_lists(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        '[approval]\ncategories = ["external", "config"]\n'
        '[llm]\nfallback_models = ["a", "b"]\ntimeout = "5m"\ncontext_chars = 8000\n'
        '[notify]\nurls = ["ntfy://x"]\non = ["failed"]\n',
    )
    assert config.approval_categories == ("external", "config")
    assert config.llm.fallback_models == ("a", "b")
    assert config.llm.timeout == 300
    assert config.llm.context_chars == 8000
    assert config.notify == NotifyConfig(urls=("ntfy://x",), on=("failed",))


def test_the_spec_section_7_example_loads(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        """\
max_parallel = 2
stop_grace = "30s"         # SIGTERM -> SIGKILL for a stopping task
nice = 10                  # workers run at this niceness
[throttle]                 # a new task starts only while all of these hold
max_load = 1.5             # 1-minute load average per core
min_free_memory = "2GiB"
gpu_max_util = 30          # percent, per GPU considered free
gpu_min_free_memory = "4GiB"
[limits.llm]               # a rate limit tasks can name in `uses:`
per_minute = 50
concurrent = 2
[approval]
categories = ["external", "config"]
[llm]
base_url = "http://127.0.0.1:8080/v1"
model = "local"
fallback_models = []
api_key_env = "OPENAI_API_KEY"
[notify]
urls = []                  # apprise URLs: mailto://, tgram://, ntfy://, json://...
on = ["report", "question", "failed"]
""",
    )
    assert config.limits["llm"].per_minute == 50
    assert config.approval_categories == ("external", "config")


# --- errors ---------------------------------------------------------------------------------


def test_bad_toml_gives_path_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("max_parallel = 2\nnice = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path} line 2: not valid TOML: nice has no value after '=' "
        '(a text needs quotes: nice = "...")\n    2 | nice = '
    )


def test_non_utf8_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'report_language = "fran\xe7ais"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 text: byte 0xe7 at offset 23"):
        load_config(path)


def test_unreadable_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.mkdir()
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(path)


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[throttle]\nmax_load = "high"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path} line 2: throttle.max_load: expected a number > 0, got 'high'"
    )


def test_config_from_mapping_prefix() -> None:
    assert error_of({"throttle": {"max_load": "high"}}) == (
        "config.toml: throttle.max_load: expected a number > 0, got 'high'"
    )


def test_unknown_keys_with_suggestions() -> None:
    message = error_of({"max_paralel": 3, "throttle": {"gpu_max_utl": 3}, "zzz": 1})
    assert message.splitlines() == [
        "config.toml: max_paralel: unknown setting (did you mean 'max_parallel'?)",
        "config.toml: zzz: unknown setting",
        "config.toml: throttle.gpu_max_utl: unknown setting (did you mean 'gpu_max_util'?)",
    ]


def test_unknown_limit_key() -> None:
    message = error_of({"limits": {"llm": {"per_minut": 5}}})
    assert "limits.llm.per_minut: unknown setting (did you mean 'per_minute'?)" in message


def test_every_problem_is_reported() -> None:
    message = error_of(
        {
            "max_parallel": 0,
            "nice": 40,
            "stop_grace": "soon",
            "throttle": {"gpu_max_util": 150},
            "llm": {"base_url": "ftp://x"},
        }
    )
    assert len(message.splitlines()) == 5


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"max_parallel": 0}, "max_parallel: expected a whole number >= 1, got 0"),
        ({"max_parallel": True}, "max_parallel: expected a whole number >= 1, got True"),
        ({"max_parallel": 1.5}, "max_parallel: expected a whole number >= 1, got 1.5"),
        ({"nice": 20}, "nice: expected a whole number from -20 to 19, got 20"),
        ({"max_interruptions": -1}, "max_interruptions: expected a whole number >= 0, got -1"),
        ({"stop_grace": "soon"}, "stop_grace: expected a duration like 30s"),
        ({"stop_grace": "-1s"}, "stop_grace: expected a duration"),
        ({"scan_interval": 0}, "scan_interval: expected a duration like 30s, 5m or 1h30m (more"),
        ({"probe_interval": [1]}, "probe_interval: expected a duration"),
        ({"report_language": ""}, "report_language: expected a text, got ''"),
        ({"report_language": 3}, "report_language: expected a text, got 3"),
        ({"throttle": 3}, "throttle: expected a table [throttle], got 3"),
        ({"throttle": {"max_load": 0}}, "throttle.max_load: expected a number > 0, got 0"),
        ({"throttle": {"max_load": True}}, "throttle.max_load: expected a number > 0"),
        ({"throttle": {"gpu_max_util": 150}}, "throttle.gpu_max_util: expected a number from 0"),
        ({"throttle": {"min_free_memory": "lots"}}, "throttle.min_free_memory: expected a size"),
        ({"throttle": {"gpu_min_free_memory": -1}}, "throttle.gpu_min_free_memory: expected"),
        ({"limits": 5}, "limits: expected tables like [limits.llm], got 5"),
        ({"limits": {"llm": 5}}, "limits.llm: expected a table [limits.llm]"),
        ({"limits": {"llm": {}}}, "limits.llm: give at least one of per_minute, per_hour or"),
        ({"limits": {"llm": {"per_minute": 0}}}, "limits.llm.per_minute: expected a whole"),
        ({"limits": {"llm": {"concurrent": "2"}}}, "limits.llm.concurrent: expected a whole"),
        ({"approval": {"categories": "external"}}, "approval.categories: expected a list of"),
        ({"approval": {"categories": [1]}}, "approval.categories: expected a list of texts"),
        ({"llm": {"base_url": "ftp://x"}}, "llm.base_url: expected an http:// or https:// URL"),
        ({"llm": {"model": ""}}, "llm.model: expected a text"),
        ({"llm": {"fallback_models": "a"}}, "llm.fallback_models: expected a list of texts"),
        ({"llm": {"context_chars": 0}}, "llm.context_chars: expected a whole number >= 1"),
        ({"llm": {"timeout": "0s"}}, "llm.timeout: expected a duration"),
        ({"notify": {"urls": "mailto://me"}}, "notify.urls: expected a list of texts"),
        ({"notify": {"on": ["reprot"]}}, "notify.on: unknown event 'reprot' (did you mean"),
        ({"notify": []}, "notify: expected a table [notify], got []"),
    ],
)
def test_bad_values(data: dict[str, object], expected: str) -> None:
    assert error_of(data).startswith("config.toml: " + expected)


def test_empty_api_key_env_is_allowed() -> None:
    assert config_from_mapping({"llm": {"api_key_env": ""}}).llm.api_key_env == ""


# --- writing --------------------------------------------------------------------------------


def test_write_default_config(tmp_path: Path) -> None:
    path = tmp_path / "home" / "config.toml"
    assert write_default_config(path) is True
    text = path.read_text()
    assert tomllib.loads(text) == DEFAULTS
    assert load_config(path) == config_from_mapping({})
    assert "# tasks running at once" in text
    assert "# [limits.llm]" in text
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left


def test_write_default_config_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("max_parallel = 7\n")
    assert write_default_config(path) is False
    assert path.read_text() == "max_parallel = 7\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_uncommenting_the_example_limit_works(tmp_path: Path) -> None:
    text = default_config_text().replace("# [limits.llm]", "[limits.llm]")
    text = text.replace("# per_minute", "per_minute").replace("# concurrent", "concurrent")
    config = load_text(tmp_path, text)
    assert config.limits["llm"] == Limit("llm", per_minute=50, per_hour=None, concurrent=2)


# --- bounds and max_retry_delay (issue 11) ---------------------------------------------------


def test_max_retry_delay_defaults_to_one_hour_and_init_writes_it(tmp_path: Path) -> None:
    assert DEFAULTS["max_retry_delay"] == "1h"
    assert config_from_mapping({}).max_retry_delay == 3600.0
    assert config_from_mapping({"max_retry_delay": "10m"}).max_retry_delay == 600.0
    assert config_from_mapping({"max_retry_delay": 0}).max_retry_delay == 0.0
    text = default_config_text()
    assert 'max_retry_delay = "1h"' in text and "up to this" in text
    assert "max_retry_delay" in error_of({"max_retry_delay": "soon"})
    assert "(did you mean 'max_retry_delay'?)" in error_of({"max_retry_dealy": "1h"})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"max_parallel": 10**400}, "max_parallel: too large: at most 10000, got 1000"),
        ({"max_parallel": 10**400}, "..."),  # the value is shortened
        ({"stop_grace": 10**400}, "stop_grace: too long: at most 366d"),
        ({"max_retry_delay": "400d"}, "max_retry_delay: too long: at most 366d"),
        ({"scan_interval": float("inf")}, "scan_interval: too long: at most 366d"),
        ({"max_interruptions": 1001}, "max_interruptions: too large: at most 1000"),
        ({"throttle": {"max_load": 10**400}}, "throttle.max_load: expected a number > 0"),
        ({"throttle": {"min_free_memory": "2PiB"}}, "too large: at most 1PiB"),
        ({"throttle": {"gpu_min_free_memory": 10**400}}, "too large: at most 1PiB"),
        ({"llm": {"context_chars": 10**12}}, "llm.context_chars: too large"),
        ({"limits": {"api": {"per_minute": 10**400}}}, "limits.api.per_minute: too large"),
    ],
)
def test_huge_numbers_are_refused_with_the_key(data: dict[str, object], expected: str) -> None:
    message = error_of(data)
    assert expected in message
    assert len(message) < 300


def test_negative_zero_in_config_is_zero() -> None:
    assert str(config_from_mapping({"throttle": {"gpu_max_util": -0.0}}).throttle.gpu_max_util) == (
        "0.0"
    )
