"""config.toml's errors in plain words: a table of broken files and what a person is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from bantzd.config import load_config
from bantzd.configwords import key_line
from bantzd.errors import ConfigError


def message_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}")
    return message.removeprefix(str(path))


BROKEN = [
    (
        "max_parallel = 2\n[throttle\nmax_load = 2\n",
        " line 2: not valid TOML: the table header [throttle is missing its closing ']' "
        "(write [NAME])\n    2 | [throttle",
    ),
    (
        "[throttle",
        " line 1: not valid TOML: the table header [throttle is missing its closing ']' "
        "(write [NAME])\n    1 | [throttle",
    ),
    (
        "[limits.llm\nper_minute = 5\n",
        " line 1: not valid TOML: the table header [limits.llm is missing its closing ']' "
        "(write [NAME])\n    1 | [limits.llm",
    ),
    (
        "[throttle]\nmax_load = 1\n\n[throttle]\ngpu_max_util = 5\n",
        " line 4: not valid TOML: the table [throttle] appears twice (first at line 1); keep one "
        "and put all its settings there\n    4 | [throttle]",
    ),
    (
        "nice = 1\nmax_parallel = 3\nnice = 2\n",
        " line 3: not valid TOML: nice is set twice (first at line 1); keep one\n    3 | nice = 2",
    ),
    (
        "[llm]\nmodel = 'a'\nmodel = 'b'\n",
        " line 3: not valid TOML: model is set twice (first at line 2); keep one\n"
        "    3 | model = 'b'",
    ),
    (
        "report_language = english\n",
        " line 1: not valid TOML: report_language: the value english needs quotes: "
        'report_language = "english"\n    1 | report_language = english',
    ),
    (
        "[throttle]\nmin_free_memory = 2GiB  # at least\n",
        " line 2: not valid TOML: min_free_memory: the value 2GiB needs quotes: "
        'min_free_memory = "2GiB"\n    2 | min_free_memory = 2GiB  # at least',
    ),
    (
        "stop_grace = 30s\n",
        ' line 1: not valid TOML: stop_grace: the value 30s needs quotes: stop_grace = "30s"'
        "\n    1 | stop_grace = 30s",
    ),
    (
        "max_parallel 2\n",
        " line 1: not valid TOML: a setting needs '=' between its name and its value "
        "(NAME = VALUE)\n    1 | max_parallel 2",
    ),
    (
        "max parallel = 2\n",
        " line 1: not valid TOML: a setting needs '=' between its name and its value "
        "(NAME = VALUE), and a name has no spaces\n    1 | max parallel = 2",
    ),
    (
        "nice =\n",
        " line 1: not valid TOML: nice has no value after '=' (a text needs quotes: "
        'nice = "...")\n    1 | nice =',
    ),
    (
        'max_parallel = 2\nstop_grace = "2',
        " line 2: not valid TOML: a quoted text is not closed: add the closing quote on the "
        'same line\n    2 | stop_grace = "2',
    ),
    (
        'stop_grace = "2\nnice = 1\n',
        " line 1: not valid TOML: a quoted text is not closed: add the closing quote on the "
        'same line\n    1 | stop_grace = "2',
    ),
    (
        '[llm]\nfallback_models = ["a", "b"\nmodel = "x"\n',
        " line 2: not valid TOML: a list opened with '[' is not closed with ']'\n"
        '    2 | fallback_models = ["a", "b"',
    ),
    (
        "throttle = {max_load = 1\n",
        " line 1: not valid TOML: a table opened with '{' is not closed with '}' on the same "
        "line\n    1 | throttle = {max_load = 1",
    ),
    (
        "nice = 1 2\n",
        " line 1: not valid TOML: nice: unexpected text after the value; a text needs quotes "
        "around all of it\n    1 | nice = 1 2",
    ),
    (
        "[throttle] max_load = 2\n",
        " line 1: not valid TOML: unexpected text after the table header; a header stands alone "
        "on its line\n    1 | [throttle] max_load = 2",
    ),
    (
        "[notify]\nenabled = True\n",
        " line 2: not valid TOML: enabled: write true in lower case\n    2 | enabled = True",
    ),
    (
        'api = "C:\\keys"\n',
        ' line 1: not valid TOML: a backslash in a "..." text: write it twice (\\\\), or use '
        "single quotes ('...')\n    1 | api = \"C:\\keys\"",
    ),
    (
        "= 3\n",
        " line 1: not valid TOML: neither a setting (NAME = VALUE) nor a table header ([NAME])"
        "\n    1 | = 3",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_toml_in_plain_words(tmp_path: Path, text: str, expected: str) -> None:
    assert message_of(tmp_path, text) == expected


def test_no_message_repeats_tomllib_words(tmp_path: Path) -> None:
    for text, _ in BROKEN:
        message = message_of(tmp_path, text)
        assert "Cannot declare" not in message and "(at line" not in message, message


def test_a_bad_setting_names_its_line(tmp_path: Path) -> None:
    text = (
        '# mine\nmax_parallel = 0\n\n[throttle]\nmax_load = "high"\n[limits.llm]\nper_minut = 3\n'
    )
    path = tmp_path / "config.toml"
    assert message_of(tmp_path, text).splitlines() == [
        " line 2: max_parallel: expected a whole number >= 1, got 0",
        f"{path} line 5: throttle.max_load: expected a number > 0, got 'high'",
        f"{path} line 7: limits.llm.per_minut: unknown setting (did you mean 'per_minute'?)",
        f"{path} line 6: limits.llm: give at least one of per_minute, per_hour or concurrent",
    ]


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("nice = 1\n", "nice", 1),
        ("[throttle]\nmax_load = 1\n", "throttle.max_load", 2),
        ("[throttle]\nnice = 1\n[llm]\nmodel = 1\n", "llm.model", 4),
        ("throttle.max_load = 1\n", "throttle.max_load", 1),
        ("throttle = { max_load = 'x' }\n", "throttle.max_load", 1),  # the inline table's line
        ("[limits.llm]\n", "limits.llm", 1),
        ("[limits.llm]\nconcurrent = 0\n", "limits.llm.per_minute", 1),  # its table
        ('[limits."my api"]\nconcurrent = 0\n', "limits.my api.concurrent", 2),
        ("max_parallel = 2\n", "notify.on", None),
    ],
)
def test_key_line(text: str, key: str, line: int | None) -> None:
    assert key_line(text, key) == line
