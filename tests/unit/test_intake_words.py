"""Pure pieces of issue 13 item 1: how `add` reads its COMMAND, the resubmit command, and
the report's Not accepted section."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bantzd.cli.addargs import (
    after_dashdash,
    default_name,
    is_shell_line,
    misplaced_hint,
    misplaced_option,
)
from bantzd.paths import Home
from bantzd.queue.spool import candidate_name, resubmit_command
from bantzd.reports.render import NightFacts, RejectedFile, render_report

OPTIONS = ["--name", "--after", "--shell", "--print-id", "--help"]


@pytest.mark.parametrize(
    ("command", "shell"),
    [
        (["echo a && echo b"], True),
        (["make -j4"], True),
        (["cat x | wc -l > n"], True),
        (["echo $HOME"], True),
        (["(cd /tmp; ls)"], True),
        (["make"], False),
        (["echo", "a && b"], False),  # several arguments are argv
        (["/bin/true"], False),
    ],
)
def test_a_single_argument_with_shell_syntax_is_a_shell_line(
    command: list[str], shell: bool
) -> None:
    assert is_shell_line(command) is shell


def test_a_program_path_with_spaces_that_exists_is_not_a_shell_line(tmp_path: Path) -> None:
    program = tmp_path / "my tool"
    program.write_text("#!/bin/sh\n")
    assert not is_shell_line([str(program)])


def test_default_names() -> None:
    assert default_name(["echo a && echo b"], True) == "echo"
    assert default_name(["(cd /tmp; make)"], True) == "cd"
    assert default_name(["/usr/bin/make", "-j4"], False) == "make"


def test_misplaced_options_are_found_only_before_the_commands_own_dashdash() -> None:
    assert misplaced_option(["make", "--name", "x"], OPTIONS) == 1
    assert misplaced_option(["make", "-j4", "--after=prep"], OPTIONS) == 2
    assert misplaced_option(["grep", "--after-context=3", "x"], OPTIONS) is None
    assert misplaced_option(["ls", "-la"], OPTIONS) is None
    assert misplaced_option(["prog", "--", "--name"], OPTIONS) is None
    assert misplaced_option(["--name"], OPTIONS) is None  # the program itself is not looked at


def test_after_dashdash_tells_a_meant_option_from_a_misplaced_one() -> None:
    assert after_dashdash(["--", "make", "--name", "x"], ["make", "--name", "x"])
    assert after_dashdash(["--name", "n", "--", "make"], ["make"])
    assert not after_dashdash(["make", "--name", "x"], ["make", "--name", "x"])
    assert not after_dashdash(["make", "--", "x"], ["make", "--", "x"])


def test_the_hint_shows_both_ways_to_write_it() -> None:
    text = misplaced_hint(["make", "-j4", "--name", "build"], 2, takes_value=True)
    assert "put options before the command, or use -- before it" in text
    assert "bantzd add --name build make -j4" in text
    assert "bantzd add -- make -j4 --name build" in text
    flag = misplaced_hint(["make", "--shell"], 1, takes_value=False)
    assert "bantzd add --shell make" in flag


def test_candidate_names() -> None:
    assert candidate_name("a.yaml") and candidate_name("b.yml")
    assert not candidate_name(".a.yaml") and not candidate_name("a.yaml.tmp")
    assert not candidate_name("a.txt") and not candidate_name("a.yaml~")


def test_resubmit_command_names_the_home_unless_it_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("BANTZ_HOME", str(tmp_path / "elsewhere"))  # cron's, not the shell's
    default = Home(tmp_path / "data" / "bantzd")
    path = default.rejected / "my job.yaml"
    assert resubmit_command(default, path) == f"bantzd submit '{path}'"
    other = Home(tmp_path / "elsewhere")
    assert resubmit_command(other, other.rejected / "a.yaml") == (
        f"bantzd --home {other.root} submit {other.rejected / 'a.yaml'}"
    )


def _facts(**kw: object) -> NightFacts:
    return NightFacts(date=date(2026, 11, 22), states=[], **kw)  # type: ignore[arg-type]


def test_not_accepted_comes_after_needs_you_with_the_command() -> None:
    rejected = [
        RejectedFile(
            "typo.yaml", "unknown key 'retires'", "bantzd submit /h/spool/rejected/typo.yaml"
        ),
        RejectedFile("s.yaml", "token sk-SECRET in a bad line", "bantzd submit /h/s.yaml"),
    ]
    text = render_report(_facts(rejected=rejected, secrets=["sk-SECRET"]))
    assert text.index("## Needs you") < text.index("## Not accepted") < text.index("## Done")
    section = text.split("## Not accepted\n\n")[1].split("\n\n")[0]
    assert section.splitlines() == [
        "- `typo.yaml`: unknown key 'retires'",
        "  fix it, then `bantzd submit /h/spool/rejected/typo.yaml`",
        "- `s.yaml`: token *** in a bad line",
        "  fix it, then `bantzd submit /h/s.yaml`",
    ]
    turkish = render_report(_facts(rejected=rejected[:1], language="tr"))
    assert "## Kabul edilmeyenler" in turkish and "düzeltin, sonra `bantzd submit" in turkish


def test_no_not_accepted_section_when_nothing_was_rejected() -> None:
    assert "Not accepted" not in render_report(_facts())
