"""Task files: every accepted form, and every rejection with its key, line and column."""

from __future__ import annotations

import json
import os
import textwrap
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bantzd.queue.taskfile import (
    MAX_TASK_FILE_BYTES,
    PRIORITY_WORDS,
    Problem,
    Resources,
    Step,
    TaskFileError,
    TaskSpec,
    parse_task,
)
from bantzd.queue.windows import Window

EXAMPLES = Path(__file__).resolve().parents[2] / "bantzd" / "examples"


def parse(text: str | bytes, name: str = "task") -> TaskSpec:
    if isinstance(text, str):
        text = textwrap.dedent(text)
    return parse_task(text, default_name=name)


def problems(text: str | bytes, name: str = "task") -> list[Problem]:
    if isinstance(text, str):
        text = textwrap.dedent(text)
    with pytest.raises(TaskFileError) as info:
        parse_task(text, default_name=name)
    assert info.value.problems, "a TaskFileError always carries its problems"
    return info.value.problems


def only(text: str | bytes, name: str = "task") -> Problem:
    found = problems(text, name)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


# --- accepted files -------------------------------------------------------------------------


def test_minimal_run_task_gets_every_default() -> None:
    spec = parse("run: echo hi\n", name="hello")
    assert spec == TaskSpec(name="hello", kind="run", run="echo hi")
    assert spec.cwd == "~"
    assert spec.priority == 0
    assert spec.retries == 0
    assert spec.retry_delay == 60.0
    assert spec.timeout is None
    assert spec.resources == Resources()
    assert spec.after == ()
    assert spec.window == ()
    assert spec.approval is False
    assert dict(spec.env) == {}
    assert spec.llm is None


def test_the_spec_section_3_example() -> None:
    spec = parse(
        """\
        name: finetune-small            # optional; default: the file's stem
        run: python train.py --epochs 3 # a shell command line
        cwd: ~/projects/llm             # default: the user's home
        env: {HF_HOME: /data/hf}
        priority: high                  # high | normal | low, or an integer
        after: [prepare-data]           # names or ids that must be done first
        retries: 2                      # extra attempts after a failure; default 0
        retry_delay: 1m                 # first backoff, doubled each attempt; default 1m
        timeout: 4h                     # per attempt
        resources: {cpus: 4, memory: 16GiB, gpus: 1, gpu_memory: 20GiB}   # see below
        window: "23:00-07:00"           # only start inside this local-time window
        not_before: "2026-11-22T01:00"  # or "01:00"
        deadline: "07:00"               # not started after this; reported as missed
        approval: true                  # held until `bantzd approve ID`
        category: research              # free text
        uses: {openai: 1}               # takes units from named rate limits
        """
    )
    assert spec.name == "finetune-small"
    assert spec.kind == "run"
    assert spec.run == "python train.py --epochs 3"
    assert spec.cwd == "~/projects/llm"
    assert spec.expanded_cwd() == os.path.join(os.path.expanduser("~"), "projects", "llm")
    assert dict(spec.env) == {"HF_HOME": "/data/hf"}
    assert spec.priority == PRIORITY_WORDS["high"] == 10
    assert spec.after == ("prepare-data",)
    assert spec.retries == 2
    assert spec.retry_delay == 60
    assert spec.timeout == 4 * 3600
    assert spec.resources == Resources(cpus=4, memory=16 * 2**30, gpus=1, gpu_memory=20 * 2**30)
    assert spec.window == (Window(time(23), time(7)),)
    assert spec.window_text == ("23:00-07:00",)
    assert spec.not_before == datetime(2026, 11, 22, 1, 0)
    assert spec.deadline == time(7, 0)
    assert spec.approval is True
    assert spec.category == "research"
    assert dict(spec.uses) == {"openai": 1}


def test_the_spec_section_8_llm_example() -> None:
    spec = parse(
        """\
        name: weekly-ai-news
        llm:
          prompt: "Summarise the key AI developments in these notes for a busy reader."
          inputs: ~/notes/ai/*.md
          model: qwen2.5-7b
          system: "You are a precise research assistant."
          max_tokens: 800
        uses: {llm: 1}
        """
    )
    assert spec.kind == "llm"
    assert spec.llm is not None
    assert dict(spec.llm) == {
        "prompt": "Summarise the key AI developments in these notes for a busy reader.",
        "inputs": ("~/notes/ai/*.md",),
        "model": "qwen2.5-7b",
        "system": "You are a precise research assistant.",
        "max_tokens": 800,
    }
    assert dict(spec.uses) == {"llm": 1}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_bundled_examples_are_valid(path: Path) -> None:
    from bantzd.queue.schedulefile import ScheduleSpec, parse_spool_file

    spec = parse_spool_file(path.read_bytes(), default_name=path.stem)
    if isinstance(spec, ScheduleSpec):  # a schedule: its task part is checked the same way
        spec = spec.task
    assert spec.kind in ("run", "steps", "python", "llm")
    json.dumps(spec.to_dict())


def test_str_input_and_a_byte_order_mark_are_accepted() -> None:
    assert parse_task("run: x\n", default_name="t").run == "x"
    assert parse_task("\ufeffrun: x\n".encode(), default_name="t").run == "x"


def test_argv_list_keeps_scalars_as_written() -> None:
    spec = parse("run: [sleep, 010, 1.10, yes, '$HOME', '']\n")
    assert spec.run == ("sleep", "010", "1.10", "yes", "$HOME", "")


def test_multi_line_run() -> None:
    spec = parse(
        """\
        run: |
          echo one
          echo two
        """
    )
    assert spec.run == "echo one\necho two\n"


def test_merge_keys_and_anchors_work() -> None:
    spec = parse(
        """\
        run: x
        env: &base {A: "1", B: "2"}
        uses:
          <<: {llm: 1}
          gpu: 2
        """
    )
    assert dict(spec.env) == {"A": "1", "B": "2"}
    assert dict(spec.uses) == {"llm": 1, "gpu": 2}


def test_merged_keys_are_overridden_by_the_mapping_itself() -> None:
    spec = parse(
        """\
        steps:
          - &one {name: a, run: echo a}
          - {<<: *one, name: b}
        """
    )
    assert spec.steps == (Step("a", "echo a"), Step("b", "echo a"))


# --- YAML-level refusals --------------------------------------------------------------------


def test_invalid_yaml_gives_line_and_column() -> None:
    p = only("run: echo\nfoo: [1, 2\nbar: 3\n")
    assert p.line == 3
    assert p.column is not None
    assert "YAML syntax error" in p.message
    assert str(p).startswith("line 3, column ")


def test_mapping_value_in_wrong_place() -> None:
    p = only("run: a: b\n")
    assert (p.line, p.column) == (1, 7)
    assert "mapping values are not allowed" in p.message


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        (
            "run: echo a: b\n",
            '; a ": " inside a plain value starts a new key: quote the value '
            "(run: 'echo a: b'), or write `run: |` and the command on the next line, indented",
        ),
        (  # a step's run, in a list
            "steps:\n  - name: s\n    run: grep -c x: log\n",
            "quote the value (run: 'grep -c x: log'), or write `run: |`",
        ),
        (  # a value with a single quote gets double quotes, escaped as YAML reads them
            'run: echo it\'s: "x"\n',
            'quote the value (run: "echo it\'s: \\"x\\""), or write `run: |`',
        ),
        ("name: my: task\nrun: 'true'\n", "quote the value (name: 'my: task')"),
    ],
)
def test_a_colon_in_a_plain_value_gets_a_quoting_hint(text: str, hint: str) -> None:
    p = only(text)
    assert "mapping values are not allowed" in p.message
    assert hint in p.message
    if "name: my" not in text:
        return
    assert "run: |" not in p.message  # a name is not a command: only quoting helps


def test_the_quoting_hint_when_applied_parses() -> None:
    from bantzd.queue.yamlnodes import colon_hint

    for value in ("echo a: b", 'echo it\'s: "x"', "a: b: c"):
        hint = colon_hint(f"run: {value}\n", 0)
        assert hint is not None
        quoted = hint.split("(run: ", 1)[1].rsplit("), or", 1)[0]
        assert parse(f"run: {quoted}\n").run == value


def test_no_quoting_hint_where_it_would_not_help() -> None:
    # The colon is not inside a one-line plain value: the usual message only.
    p = only("run:\n  a: b\n c: d\n")
    assert "quote the value" not in p.message


def test_tab_indentation_gets_a_hint() -> None:
    p = only("run: x\nenv:\n\tA: 1\n")
    assert p.line == 3
    assert "tabs" in p.message


def test_two_documents_are_refused() -> None:
    p = only("run: a\n---\nrun: b\n")
    assert "single document" in p.message
    assert p.line == 2


def test_top_level_list_is_refused() -> None:
    p = only("- run: a\n- run: b\n")
    assert p.message == "a task file must be a mapping of keys, got a list"
    assert str(p) == "line 1, column 1: a task file must be a mapping of keys, got a list"


def test_top_level_scalar_is_refused() -> None:
    p = only("echo hello\n")
    assert p.message == "a task file must be a mapping of keys, got the value 'echo hello'"


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n# at all\n", "   \n", "---\n"])
def test_empty_file(text: str) -> None:
    p = only(text)
    assert str(p) == "empty task file"


def test_non_utf8_bytes() -> None:
    p = only(b"name: caf\xe9\nrun: x\n")
    assert p.message == "not UTF-8 text: byte 0xe9 at offset 9"
    assert (p.line, p.column) == (1, 10)


def test_utf16_is_not_utf8() -> None:
    p = only("run: x\n".encode("utf-16"))
    assert p.message.startswith("not UTF-8 text: byte 0xff at offset 0")


def test_file_too_large() -> None:
    data = b"run: x\n" + b"#" * MAX_TASK_FILE_BYTES
    p = only(data)
    assert "task files are limited to 1 MiB" in p.message
    assert p.message.startswith("file is 1 MiB") or p.message.startswith("file is 1.0")


def test_a_file_exactly_at_the_limit_is_read() -> None:
    data = b"run: x\n#" + b"x" * (MAX_TASK_FILE_BYTES - 9) + b"\n"
    assert len(data) == MAX_TASK_FILE_BYTES
    assert parse(data).run == "x"


def test_python_object_tag_is_rejected_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = only(f"run: x\nenv: !!python/object/apply:os.system ['touch {marker}']\n")
    assert not marker.exists()
    assert "!!python/object/apply:os.system" in p.message
    assert "not allowed" in p.message
    assert (p.line, p.column) == (2, 6)


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/name:os.system",
        "!!python/module:os",
        "!!python/object/new:subprocess.Popen [[touch, x]]",
        "!mytag value",
        "!<tag:example.com,2000:thing> value",
    ],
)
def test_every_non_standard_tag_is_rejected(tagged: str) -> None:
    p = only(f"run: x\ncategory: {tagged}\n")
    assert "not allowed" in p.message


def test_a_tag_as_a_key_is_rejected_too() -> None:
    p = only("run: x\n? !!python/name:os.system\n: 1\n")
    assert "!!python/name:os.system" in p.message


def test_recursive_alias_is_refused() -> None:
    p = only("run: x\nargs: &a [*a]\n")
    assert "alias" in p.message


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    p = only("\n".join(lines) + "\n")
    assert "aliases expand" in p.message


def test_deep_nesting_is_refused_without_crashing() -> None:
    p = only("run: x\nargs: " + "[" * 100_000 + "\n")
    assert "nested" in p.message
    p = only("run: x\nargs:\n" + "".join("  " * i + "- \n" for i in range(150)))
    assert "nested" in p.message


def test_duplicate_key() -> None:
    p = only("run: a\nretries: 1\nretries: 2\n")
    assert p.key == "retries"
    assert p.message == "given twice (first on line 2)"
    assert p.line == 3


# --- keys -----------------------------------------------------------------------------------


def test_unknown_key_with_suggestion() -> None:
    p = only("run: x\nretires: 2\n")
    assert p == Problem("unknown key (did you mean 'retries'?)", "retires", 2, 1)
    assert str(p) == "line 2, column 1: retires: unknown key (did you mean 'retries'?)"


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("command", "run"),
        ("depends_on", "after"),
        ("workdir", "cwd"),
        ("environment", "env"),
        ("gpus", "resources.gpus"),
        ("memory", "resources.memory"),
        ("Name", "name"),
        ("retry-delay", "retry_delay"),
        ("not_befor", "not_before"),
        ("timeuot", "timeout"),
    ],
)
def test_unknown_key_suggestions(key: str, suggestion: str) -> None:
    found = problems(f"run: x\n{key}: 1\n")
    assert f"{key}: unknown key (did you mean '{suggestion}'?)" in [
        f"{p.key}: {p.message}" for p in found
    ]


def test_unknown_key_without_a_close_match() -> None:
    p = only("run: x\nzzzzzz: 1\n")
    assert p.message == "unknown key"


def test_unknown_key_inside_resources() -> None:
    p = only("run: x\nresources:\n  cpus: 2\n  memroy: 1GiB\n")
    assert p == Problem("unknown key (did you mean 'memory'?)", "resources.memroy", 4, 3)


def test_unknown_key_inside_a_step() -> None:
    found = problems("steps:\n  - nmae: a\n    run: x\n")
    assert [(p.key, p.message, p.line, p.column) for p in found] == [
        ("steps[1].nmae", "unknown key (did you mean 'name'?)", 2, 5)
    ]


def test_unknown_key_inside_llm() -> None:
    p = only("llm:\n  promt: hi\n  prompt: hello\n")
    assert p == Problem("unknown key (did you mean 'prompt'?)", "llm.promt", 2, 3)


def test_non_text_key() -> None:
    p = only("run: x\n[a, b]: 1\n")
    assert p.message == "keys must be plain text"


def test_every_problem_is_reported_in_file_order() -> None:
    found = problems(
        """\
        run: x
        retries: many
        resources: {memory: [1, 2], gpus: -1}
        timeout: soon
        colour: blue
        """
    )
    assert [p.key for p in found] == [
        "retries",
        "resources.memory",
        "resources.gpus",
        "timeout",
        "colour",
    ]
    assert [p.line for p in found] == [2, 3, 3, 4, 5]
    assert "resources.memory: expected a size like 512MiB, 16GiB or 2GB, got [1, 2]" in [
        f"{p.key}: {p.message}" for p in found
    ]


def test_error_text_is_one_problem_per_line() -> None:
    with pytest.raises(TaskFileError) as info:
        parse("run: x\nretries: -1\ntimeout: 0\n")
    assert str(info.value).splitlines() == [
        "line 2, column 10: retries: expected a whole number >= 0, got -1",
        "line 3, column 10: timeout: must be more than zero, got 0",
    ]


def test_problem_str_without_location_or_key() -> None:
    assert str(Problem("empty task file")) == "empty task file"
    assert str(Problem("bad", key="k")) == "k: bad"
    assert str(Problem("bad", key="k", line=4)) == "line 4: k: bad"
    assert str(Problem("bad", line=4, column=2)) == "line 4, column 2: bad"


def test_null_value_is_an_error_not_the_default() -> None:
    p = only("run: x\ntimeout:\n")
    assert p.key == "timeout"
    assert p.message.endswith("got nothing")


# --- what to do -----------------------------------------------------------------------------


def test_missing_worker_key() -> None:
    p = only("name: idle\n")
    assert p.message == "missing what to do: give one of run, steps, python, llm, agent"


def test_two_worker_keys_names_both() -> None:
    p = only("run: x\npython: a.b:c\n")
    assert "run and python" in p.message
    assert "give only one" in p.message
    assert p.line == 2


def test_three_worker_keys() -> None:
    p = only("run: x\nsteps: [{run: y}]\npython: a.b:c\n")
    assert "run, steps and python" in p.message


@pytest.mark.parametrize(
    "value", ["", "'   '", "[]", "[echo, [1]]", "[echo, {a: 1}]", "[echo, null]", "{a: 1}", "''"]
)
def test_bad_run_values(value: str) -> None:
    p = only(f"run: {value}\n")
    assert p.key == "run"


def test_run_argv_null_message() -> None:
    p = only("run: [echo, ~]\n")
    assert p.message == "argument 2: expected text, got ~ (quote it)"
    assert (p.line, p.column) == (1, 13)


def test_steps_with_default_names() -> None:
    spec = parse(
        """\
        steps:
          - run: echo a
          - name: second
            run: [echo, b]
          - run: echo c
        """
    )
    assert spec.kind == "steps"
    assert spec.steps == (
        Step("step-1", "echo a"),
        Step("second", ("echo", "b")),
        Step("step-3", "echo c"),
    )


def test_step_names_may_be_numbers_but_not_empty() -> None:
    assert parse("steps: [{name: 1, run: x}]\n").steps == (Step("1", "x"),)
    assert only("steps: [{name: '', run: x}]\n").key == "steps[1].name"
    assert only('steps: [{name: "a\\nb", run: x}]\n').key == "steps[1].name"


def test_step_names_must_be_unique() -> None:
    p = only("steps:\n  - {name: a, run: x}\n  - {name: a, run: y}\n")
    assert p.key == "steps[2].name"
    assert "'a' is used twice" in p.message


def test_a_default_step_name_can_clash_too() -> None:
    p = only("steps:\n  - {name: step-2, run: x}\n  - {run: y}\n")
    assert "'step-2' is used twice" in p.message


def test_step_without_run() -> None:
    p = only("steps:\n  - name: a\n")
    assert p.key == "steps[1]"
    assert p.message.startswith("missing run")


@pytest.mark.parametrize("value", ["[]", "echo hi", "{run: x}", "[echo hi]", "[[x]]"])
def test_bad_steps(value: str) -> None:
    found = problems(f"steps: {value}\n")
    assert all(p.key.startswith("steps") for p in found if p.key)


@pytest.mark.parametrize(
    "ref", ["pkg.mod:func", "mod:func", "a.b.c:Cls.method", "_priv._mod:_f", "ünï:côde"]
)
def test_python_refs(ref: str) -> None:
    spec = parse(f"python: '{ref}'\nargs: {{epochs: 3, when: 2026-11-22}}\n")
    assert spec.kind == "python"
    assert spec.python == ref
    assert dict(spec.args) == {"epochs": 3, "when": datetime(2026, 11, 22).date()}


@pytest.mark.parametrize(
    "ref", ["pkg.mod", "pkg.mod:", ":func", "pkg:1bad", "a b:c", "pkg..mod:f", "a:b:c", "[]"]
)
def test_bad_python_refs(ref: str) -> None:
    p = only(f"python: {ref}\n" if ref == "[]" else f"python: '{ref}'\n")
    assert p.key == "python"
    assert "package.module:function" in p.message


def test_args_need_python() -> None:
    p = only("run: x\nargs: {a: 1}\n")
    assert p == Problem("only python tasks take args", "args", 2, 1)


def test_args_must_be_a_mapping() -> None:
    p = only("python: a:b\nargs: [1, 2]\n")
    assert p.key == "args"
    assert p.message == "expected a mapping of keys, got [1, 2]"


# --- llm ------------------------------------------------------------------------------------


def test_llm_full() -> None:
    spec = parse(
        """\
        llm:
          prompt_file: ~/prompts/news.md
          inputs: [a.md, "b/*.md"]
          temperature: 0.2
          confirm: Send the summary?
          choices: [yes, no]
        """
    )
    assert spec.llm is not None
    assert dict(spec.llm) == {
        "prompt_file": "~/prompts/news.md",
        "inputs": ("a.md", "b/*.md"),
        "temperature": 0.2,
        "confirm": "Send the summary?",
        "choices": ("yes", "no"),
    }
    assert spec.to_dict()["llm"]["choices"] == ["yes", "no"]


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("prompt: a\n  prompt_file: b", "llm", "give prompt or prompt_file, not both"),
        ("model: m", "llm", "missing the prompt: give prompt or prompt_file"),
        ("prompt: a\n  choices: [x]", "llm.choices", "only used with confirm"),
        ("prompt: a\n  max_tokens: 0", "llm.max_tokens", "expected a whole number > 0, got 0"),
        ("prompt: a\n  max_tokens: many", "llm.max_tokens", "expected a whole number > 0"),
        ("prompt: a\n  temperature: 3", "llm.temperature", "expected a number from 0 to 2"),
        ("prompt: a\n  temperature: hot", "llm.temperature", "expected a number from 0 to 2"),
        ("prompt: a\n  temperature: true", "llm.temperature", "expected a number from 0 to 2"),
        ("prompt: a\n  inputs: []", "llm.inputs", "got an empty list"),
        ("prompt: [a]", "llm.prompt", "expected the prompt text"),
        ("prompt: ''", "llm.prompt", "got an empty text"),
    ],
)
def test_llm_problems(body: str, key: str, message: str) -> None:
    p = only(f"llm:\n  {body}\n")
    assert p.key == key
    assert message in p.message


def test_llm_must_be_a_mapping() -> None:
    p = only("llm: summarise my notes\n")
    assert p.key == "llm"
    assert p.message.startswith("expected a mapping of keys")


# --- name -----------------------------------------------------------------------------------


def test_name_defaults_to_the_file_stem() -> None:
    assert parse("run: x\n", name="train").name == "train"


@pytest.mark.parametrize("value", ["''", "'  '", "a/b", '"two\\nlines"', "123", "'0042'", "[a]"])
def test_bad_names(value: str) -> None:
    p = only(f"name: {value}\nrun: x\n")
    assert p.key == "name"


def test_all_digit_name_message() -> None:
    p = only("name: '14'\nrun: x\n")
    assert "all digits" in p.message
    assert "task id" in p.message


def test_all_digit_file_stem_asks_for_a_name_key() -> None:
    p = only("run: x\n", name="14")
    assert "no name: key" in p.message
    assert "all digits" in p.message


@pytest.mark.parametrize(("value", "name"), [("2026-11-22", "2026-11-22"), ("yes", "yes")])
def test_names_are_taken_as_written(value: str, name: str) -> None:
    assert parse(f"name: {value}\nrun: x\n").name == name


# --- scheduling keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "priority"),
    [("high", 10), ("normal", 0), ("low", -10), ("HIGH", 10), ("5", 5), ("-3", -3), ("'7'", 7)],
)
def test_priority(value: str, priority: int) -> None:
    assert parse(f"run: x\npriority: {value}\n").priority == priority


@pytest.mark.parametrize("value", ["urgent", "true", "1.5", "[1]", "''"])
def test_bad_priority(value: str) -> None:
    p = only(f"run: x\npriority: {value}\n")
    assert p.key == "priority"
    assert "high, normal, low or a whole number" in p.message


@pytest.mark.parametrize(
    ("value", "after"),
    [
        ("prepare-data", ("prepare-data",)),
        ("14", (14,)),
        ("'14'", (14,)),
        ("[prepare-data, 3, '4']", ("prepare-data", 3, 4)),
        ("[a, a, 2, '2']", ("a", 2)),
    ],
)
def test_after(value: str, after: tuple[str | int, ...]) -> None:
    assert parse(f"run: x\nafter: {value}\n").after == after


@pytest.mark.parametrize("value", ["0", "[0]", "[true]", "[[a]]", "[1.5]", "''", "{a: 1}", "-1"])
def test_bad_after(value: str) -> None:
    p = only(f"run: x\nafter: {value}\n")
    assert p.key == "after"


@pytest.mark.parametrize("value", ["-1", "two", "true", "1.5", "[1]"])
def test_bad_retries(value: str) -> None:
    p = only(f"run: x\nretries: {value}\n")
    assert p.key == "retries"
    assert p.message.startswith("expected a whole number >= 0")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1m", 60),
        ("0", 0),
        ("30", 30),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("2.5", 2.5),
        ("500ms", 0.5),
        ("'45s'", 45),
        ("010", 10),
    ],
)
def test_retry_delay(value: str, seconds: float) -> None:
    assert parse(f"run: x\nretry_delay: {value}\n").retry_delay == seconds


@pytest.mark.parametrize(("value", "seconds"), [("4h", 14400), ("1d", 86400), ("90", 90)])
def test_timeout(value: str, seconds: float) -> None:
    assert parse(f"run: x\ntimeout: {value}\n").timeout == seconds


@pytest.mark.parametrize("value", ["0", "0s", "-1s", "-5", "soon", "1:30", "[1h]", "true"])
def test_bad_timeout(value: str) -> None:
    p = only(f"run: x\ntimeout: {value}\n")
    assert p.key == "timeout"


def test_bad_duration_message() -> None:
    p = only("run: x\nretry_delay: soon\n")
    assert p.message == "expected a duration like 30s, 90m, 4h or 1h30m, got 'soon'"
    assert (p.line, p.column) == (2, 14)


# --- cwd and env ----------------------------------------------------------------------------


def test_cwd_forms() -> None:
    home = os.path.expanduser("~")
    assert parse("run: x\n").expanded_cwd() == os.path.normpath(home)
    assert parse("run: x\ncwd: ~\n").cwd == "~"
    assert parse("run: x\ncwd: /srv/data/\n").expanded_cwd() == "/srv/data"
    assert parse("run: x\ncwd: projects/llm\n").expanded_cwd() == os.path.join(
        home, "projects", "llm"
    )


@pytest.mark.parametrize("value", ["''", "[a]", "null", "{a: 1}"])
def test_bad_cwd(value: str) -> None:
    assert only(f"run: x\ncwd: {value}\n").key == "cwd"


def test_env_values_are_taken_as_written() -> None:
    spec = parse("run: x\nenv: {HF_HOME: /data/hf, N: 3, DEBUG: yes, Z: 010, E: '', F: 1.10}\n")
    assert dict(spec.env) == {
        "HF_HOME": "/data/hf",
        "N": "3",
        "DEBUG": "yes",
        "Z": "010",
        "E": "",
        "F": "1.10",
    }


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("{A: null}", "env.A"),
        ("{A: ~}", "env.A"),
        ("{A: [1, 2]}", "env.A"),
        ("{A: {b: 1}}", "env.A"),
        ("{'A=B': 1}", "env.A=B"),
        ("[A, B]", "env"),
        ("A=1", "env"),
    ],
)
def test_bad_env(value: str, key: str) -> None:
    assert only(f"run: x\nenv: {value}\n").key == key


def test_env_null_message_says_how_to_write_empty() -> None:
    p = only("run: x\nenv:\n  A:\n")
    assert 'write "" for empty' in p.message


# --- resources ------------------------------------------------------------------------------


def test_resources_forms() -> None:
    spec = parse("run: x\nresources: {cpus: 0.5, memory: 1073741824, gpus: 2}\n")
    assert spec.resources == Resources(cpus=0.5, memory=2**30, gpus=2)


def test_gpu_memory_alone_means_one_gpu() -> None:
    spec = parse("run: x\nresources: {gpu_memory: 20GiB}\n")
    assert spec.resources == Resources(gpus=1, gpu_memory=20 * 2**30)


def test_gpu_memory_with_zero_gpus_is_an_error() -> None:
    p = only("run: x\nresources: {gpus: 0, gpu_memory: 20GiB}\n")
    assert p.key == "resources.gpus"
    assert "gpu_memory needs gpus > 0" in p.message


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("{cpus: 0}", "resources.cpus"),
        ("{cpus: -1}", "resources.cpus"),
        ("{cpus: many}", "resources.cpus"),
        ("{cpus: .inf}", "resources.cpus"),
        ("{cpus: true}", "resources.cpus"),
        ("{memory: lots}", "resources.memory"),
        ("{memory: 0}", "resources.memory"),
        ("{memory: -1GiB}", "resources.memory"),
        ("{gpus: -1}", "resources.gpus"),
        ("{gpus: 1.5}", "resources.gpus"),
        ("{gpu_memory: 20XB}", "resources.gpu_memory"),
        ("4", "resources"),
        ("[cpus]", "resources"),
    ],
)
def test_bad_resources(value: str, key: str) -> None:
    assert only(f"run: x\nresources: {value}\n").key == key


def test_bad_size_message() -> None:
    p = only("run: x\nresources:\n  memory: [1, 2]\n")
    assert str(p) == (
        "line 3, column 11: resources.memory: expected a size like 512MiB, 16GiB or 2GB, got [1, 2]"
    )


# --- windows and times ----------------------------------------------------------------------


def test_window_crossing_midnight_unquoted() -> None:
    spec = parse("run: x\nwindow: 23:00-07:00\n")
    assert spec.window == (Window(time(23), time(7)),)
    assert spec.window_text == ("23:00-07:00",)


def test_window_list() -> None:
    spec = parse("run: x\nwindow: ['01:00-05:00', ' 12:00-13:30 ']\n")
    assert spec.window == (Window(time(1), time(5)), Window(time(12), time(13, 30)))
    assert spec.window_text == ("01:00-05:00", "12:00-13:30")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("23:00", "not a time window"),
        ("'23:00-23:00'", "same time"),
        ("[]", "empty list"),
        ("['01:00-02:00', nonsense]", "not a time window"),
        ("true", "not a time window"),
    ],
)
def test_bad_window(value: str, message: str) -> None:
    p = only(f"run: x\nwindow: {value}\n")
    assert p.key == "window"
    assert message in p.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("'2026-11-22T01:00'", datetime(2026, 11, 22, 1, 0)),
        ("2026-11-22T01:00", datetime(2026, 11, 22, 1, 0)),
        ("2026-11-22 01:00:00", datetime(2026, 11, 22, 1, 0)),
        ("2026-11-22", datetime(2026, 11, 22)),
        ("'01:00'", time(1, 0)),
        ("01:00", time(1, 0)),
        ("23:30", time(23, 30)),  # YAML 1.1 would read this as the integer 1410
        (
            "2026-11-22T01:00:00+02:00",
            datetime(2026, 11, 22, 1, 0, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("'2026-11-22T01:00Z'", datetime(2026, 11, 22, 1, 0, tzinfo=UTC)),
    ],
)
@pytest.mark.parametrize("key", ["not_before", "deadline"])
def test_when_forms(key: str, value: str, expected: datetime | time) -> None:
    got = getattr(parse(f"run: x\n{key}: {value}\n"), key)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize("value", ["tomorrow", "25:00", "2026-13-45", "[01:00]", "'2026-02-30'"])
@pytest.mark.parametrize("key", ["not_before", "deadline"])
def test_bad_when(key: str, value: str) -> None:
    assert only(f"run: x\n{key}: {value}\n").key == key


# --- approval, category, uses ---------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("yes", True)])
def test_approval(value: str, expected: bool) -> None:
    assert parse(f"run: x\napproval: {value}\n").approval is expected


@pytest.mark.parametrize("value", ["maybe", "1", "'true'", "[true]"])
def test_bad_approval(value: str) -> None:
    p = only(f"run: x\napproval: {value}\n")
    assert p.key == "approval"
    assert p.message.startswith("expected true or false")


def test_category() -> None:
    assert parse("run: x\ncategory: external\n").category == "external"
    assert only("run: x\ncategory: [a]\n").key == "category"
    assert only("run: x\ncategory: ''\n").key == "category"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("{openai: 0}", "uses.openai"),
        ("{openai: x}", "uses.openai"),
        ("{openai: 1.5}", "uses.openai"),
        ("{openai: true}", "uses.openai"),
        ("[openai]", "uses"),
        ("openai", "uses"),
    ],
)
def test_bad_uses(value: str, key: str) -> None:
    assert only(f"run: x\nuses: {value}\n").key == key


# --- to_dict --------------------------------------------------------------------------------


def test_to_dict_is_json_and_complete() -> None:
    spec = parse(
        """\
        name: full
        python: pkg.mod:run
        args: {when: 2026-11-22, raw: !!binary aGk=, tags: !!set {a: null}}
        env: {A: "1"}
        after: [prep, 3]
        timeout: 1h
        resources: {memory: 1GiB, gpu_memory: 2GiB}
        window: 23:00-07:00
        not_before: 2026-11-22T01:00
        deadline: 07:00
        uses: {llm: 1}
        """
    )
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["name"] == "full"
    assert d["kind"] == "python"
    assert d["python"] == "pkg.mod:run"
    assert d["args"] == {"when": "2026-11-22", "raw": "hi", "tags": ["a"]}
    assert d["after"] == ["prep", 3]
    assert d["timeout"] == 3600
    assert d["retry_delay"] == 60
    assert d["resources"] == {"cpus": None, "memory": 2**30, "gpus": 1, "gpu_memory": 2**31}
    assert d["window"] == ["23:00-07:00"]
    assert d["not_before"] == "2026-11-22T01:00:00"
    assert d["deadline"] == "07:00:00"
    assert d["uses"] == {"llm": 1}
    assert d["run"] is None
    assert d["llm"] is None
    assert set(d) == {
        "name", "kind", "run", "steps", "python", "args", "llm", "cwd", "env", "priority",
        "after", "retries", "retry_delay", "max_retry_delay", "timeout", "resources", "window",
        "not_before", "deadline", "approval", "category", "uses", "unique", "agent", "estimate",
        "checkpoints", "executor",
    }  # fmt: skip


def test_to_dict_of_argv_and_steps() -> None:
    assert parse("run: [a, b]\n").to_dict()["run"] == ["a", "b"]
    steps = parse("steps: [{run: [a, b]}, {name: s, run: c}]\n").to_dict()["steps"]
    assert steps == [{"name": "step-1", "run": ["a", "b"]}, {"name": "s", "run": "c"}]


# --- robustness -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_any_input_is_a_spec_or_a_task_file_error(data: bytes | str) -> None:
    try:
        spec = parse_task(data, default_name="fuzz")
    except TaskFileError as e:
        assert e.problems
        assert str(e)
    else:
        json.dumps(spec.to_dict())


_yaml_scalars = st.one_of(
    st.integers(-5, 5),
    st.sampled_from(["1h", "x", "", "~", "yes", "23:00-07:00", "01:00", "1GiB", "[1]", "{a: 1}"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["run", "steps", "name", "priority", "after", "retries", "timeout", "window",
             "env", "resources", "deadline", "uses", "llm", "python", "args", "approval"]
        ),
        _yaml_scalars,
        max_size=6,
    )
)  # fmt: skip
def test_any_combination_of_keys_is_a_spec_or_a_task_file_error(doc: dict[str, object]) -> None:
    text = "".join(f"{k}: {v}\n" for k, v in doc.items())
    try:
        spec = parse_task(text, default_name="fuzz")
    except TaskFileError as e:
        assert all(isinstance(p, Problem) for p in e.problems)
    else:
        assert spec.kind in ("run", "steps", "python", "llm")
        json.dumps(spec.to_dict())


# --- bounds: no number, duration, size or date reaches the supervisor unchecked (issue 11) ---

_BIG = "9" * 400


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        (f"timeout: {_BIG}", "timeout", "too long: at most 366d"),
        (f"timeout: {_BIG}d", "timeout", "too long: at most 366d"),
        ("timeout: .inf", "timeout", "too long: at most 366d"),
        ("timeout: 367d", "timeout", "too long: at most 366d"),
        ("retry_delay: 100000000d", "retry_delay", "too long: at most 366d"),
        (f"max_retry_delay: {_BIG}", "max_retry_delay", "too long: at most 366d"),
        ("timeout: .nan", "timeout", "expected a duration"),
        ("timeout: 1e400", "timeout", "expected a duration"),
        (f"resources: {{cpus: {_BIG}}}", "resources.cpus", "at most 100000"),
        ("resources: {cpus: 1.0e400}", "resources.cpus", "at most 100000"),
        ("resources: {cpus: .inf}", "resources.cpus", "at most 100000"),
        ("resources: {cpus: -0.0}", "resources.cpus", "CPUs > 0"),
        (f"resources: {{memory: {_BIG}}}", "resources.memory", "too large: at most 1PiB"),
        ("resources: {gpu_memory: 2PiB}", "resources.gpu_memory", "too large: at most 1PiB"),
        (f"resources: {{gpus: {_BIG}}}", "resources.gpus", "too large: at most 1000,"),
        ("retries: 1001", "retries", "too large: at most 1000,"),
        ("priority: 1000001", "priority", "must be from -1000000 to 1000000"),
        (f"priority: '-{_BIG}'", "priority", "must be from -1000000 to 1000000"),
        (f"priority: {'9' * 5000}", "priority", "must be from -1000000"),  # 4300+ digits
        (f"uses: {{api: {_BIG}}}", "uses.api", "too large: at most 1000000,"),
        (f"after: [{_BIG}]", "after", "task ids go up to 1000000000000"),
        ("after: [1000000000001]", "after", "task ids go up to 1000000000000"),
        ("not_before: 9999-12-31T23:59:59-12:00", "not_before", "from 1970 to 9998"),
        ("deadline: 0001-01-01T00:00:00+14:00", "deadline", "from 1970 to 9998"),
        ("deadline: 1969-12-31", "deadline", "from 1970 to 9998"),
    ],
)
def test_every_number_is_bounded_with_the_key_and_the_limit(
    text: str, where: str, says: str
) -> None:
    problem = only(f"run: echo x\n{text}\n")
    assert problem.key == where
    assert says in problem.message, problem.message
    assert len(str(problem)) < 200  # a 400-digit value is shortened


def test_llm_numbers_are_bounded() -> None:
    problem = only(f"llm: {{prompt: hi, max_tokens: {_BIG}}}\n")
    assert problem.key == "llm.max_tokens" and "at most 100000000" in problem.message
    problem = only(f"llm: {{prompt: hi, temperature: {_BIG}}}\n")
    assert problem.key == "llm.temperature" and "from 0 to 2" in problem.message
    assert parse("llm: {prompt: hi, temperature: -0.0}\n").llm["temperature"] == 0.0


def test_the_largest_values_are_still_accepted() -> None:
    spec = parse(
        """\
        run: echo x
        timeout: 366d
        retry_delay: 366d
        max_retry_delay: 366d
        retries: 1000
        priority: -1000000
        resources: {cpus: 100000, memory: 1PiB, gpus: 1000, gpu_memory: 1PiB}
        uses: {api: 1000000}
        after: [1000000000000]
        not_before: 9998-12-31T23:59:59-12:00
        deadline: 1970-01-01T00:00:00+14:00
        """
    )
    assert spec.timeout == spec.retry_delay == spec.max_retry_delay == 366 * 86400
    assert spec.resources == Resources(cpus=100000.0, memory=1024**5, gpus=1000, gpu_memory=1024**5)


def test_negative_zero_is_zero() -> None:
    spec = parse("run: x\nretry_delay: -0.0\nmax_retry_delay: -0\n")
    assert spec.retry_delay == 0.0 and str(spec.retry_delay) == "0.0"
    assert spec.max_retry_delay == 0.0
    assert only("run: x\ntimeout: -0.0\n").message.startswith("must be more than zero")


def test_max_retry_delay_caps_the_doubling_and_cannot_be_below_retry_delay() -> None:
    from types import SimpleNamespace

    config = SimpleNamespace(max_retry_delay=3600.0)
    assert parse("run: x\n").max_retry_delay is None
    assert parse("run: x\n").retry_cap(config.max_retry_delay) == 3600.0
    assert parse("run: x\nmax_retry_delay: 10m\n").retry_cap(config.max_retry_delay) == 600.0
    # Config's cap never shortens a retry_delay the file asked for; the task's own may not be
    # below it at all.
    assert parse("run: x\nretry_delay: 2h\n").retry_cap(config.max_retry_delay) == 7200.0
    problem = only("run: x\nretry_delay: 2h\nmax_retry_delay: 1h\n")
    assert problem.key == "max_retry_delay"
    assert "1h is less than retry_delay 2h" in problem.message
    assert "max_retry_delay" in only("run: x\nmax_backoff: 1h\n").message
    assert "max_retry_delay" in only("run: x\nmax_retry_dealy: 1h\n").message


def test_a_control_character_is_reported_with_line_and_column() -> None:
    problem = only(b"run: echo hi\nname: be\x07ll\n")
    assert (problem.line, problem.column) == (2, 9)
    assert "position" not in str(problem)
    assert "control characters are not allowed, found U+0007" in problem.message
    assert '"\\x07" inside double quotes' in problem.message
    # After a byte order mark, and on the first line, too.
    problem = only("\ufeffrun: a\x01b\n".encode())
    assert (problem.line, problem.column) == (1, 7)


def test_a_lone_surrogate_escape_is_not_text() -> None:
    import yaml as _yaml

    from bantzd.queue import yamlnodes

    # libyaml refuses "\ud800" itself; the pure-Python loader (no libyaml) builds it.
    try:
        loader, yamlnodes._C_LOADER = yamlnodes._C_LOADER, None
        problem = only('run: x\nenv: {A: "a\\ud800"}\n')
    finally:
        yamlnodes._C_LOADER = loader
    assert "surrogate" in problem.message and problem.line == 2
    assert _yaml.__name__ == "yaml"


# Numbers the way people, YAML 1.1 and attackers write them.
_number_texts = st.one_of(
    st.integers().map(str),
    st.integers(min_value=10**15, max_value=10**500).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            ".inf",
            "-.inf",
            ".nan",
            ".NaN",
            "1e400",
            "1.0e400",
            "-1.0e400",
            "-0",
            "-0.0",
            "+0",
            "0x7fffffffffffffffffff",
            "0o777",
            "0b101",
            "1_000",
            "1:30",
            "190:00:00",
            "00",
            "007",
            "1e-400",
            "4.9e-324",
            "'12'",
            '"-0"',
            "~",
            "[1, 2]",
            "{a: 1}",
        ]
    ),
)
_with_unit = st.tuples(
    _number_texts, st.sampled_from(["", "s", "m", "h", "d", "w", "ms", "GiB", "PiB", "KB"])
).map(lambda t: f"{t[0]}{t[1]}" if t[0][:1].isdigit() else t[0])
_when_texts = st.one_of(
    st.builds(
        lambda y, off: f"{y:04d}-06-01T00:00:00{off}",
        st.integers(1, 9999),
        st.sampled_from(["", "Z", "+14:00", "-12:00", "+23:59"]),
    ),
    st.builds(lambda y: f"{y:04d}-12-31", st.integers(1, 9999)),
)
NUMERIC_KEYS = [
    "timeout: {}", "retry_delay: {}", "max_retry_delay: {}", "retries: {}", "priority: {}",
    "resources: {{cpus: {}}}", "resources: {{memory: {}}}", "resources: {{gpus: {}}}",
    "resources: {{gpu_memory: {}}}", "uses: {{api: {}}}", "after: [{}]", "after: {}",
]  # fmt: skip
LLM_NUMERIC_KEYS = ["max_tokens: {}", "temperature: {}"]


def _check_bounded(spec: TaskSpec) -> None:
    """What the supervisor does with a spec's numbers must not fail."""
    from bantzd.supervisor.scheduler import backoff
    from bantzd.supervisor.timing import resolve_when

    json.dumps(spec.to_dict(), allow_nan=False)
    for value in (spec.timeout, spec.retry_delay, spec.max_retry_delay):
        assert value is None or 0 <= value <= 366 * 86400
    wait = backoff(spec.retry_delay, 10**6, spec.max_retry_delay or 3600.0)
    datetime.fromtimestamp(1.8e9 + wait, UTC)
    now = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    for when in (spec.not_before, spec.deadline):
        if when is not None:
            resolve_when(when, now).timestamp()
    float(spec.resources.cpus or 0)
    float(spec.resources.memory or 0) + float(spec.resources.gpu_memory or 0)
    assert abs(spec.priority) <= 1_000_000 and 0 <= spec.retries <= 1000


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(NUMERIC_KEYS), _with_unit)
def test_any_number_for_any_numeric_key_is_a_spec_or_a_task_file_error(
    key: str, value: str
) -> None:
    text = "run: echo x\n" + key.format(value) + "\n"
    try:
        spec = parse_task(text, default_name="fuzz")
    except TaskFileError as e:
        assert e.problems and str(e)
    else:
        _check_bounded(spec)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(LLM_NUMERIC_KEYS), _with_unit)
def test_any_number_for_an_llm_key_is_a_spec_or_a_task_file_error(key: str, value: str) -> None:
    text = "llm:\n  prompt: hi\n  " + key.format(value) + "\n"
    try:
        spec = parse_task(text, default_name="fuzz")
    except TaskFileError as e:
        assert e.problems and str(e)
    else:
        json.dumps(spec.to_dict(), allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["not_before", "deadline"]), _when_texts, st.booleans())
def test_any_date_is_a_spec_or_a_task_file_error(key: str, value: str, quoted: bool) -> None:
    shown = f'"{value}"' if quoted else value
    try:
        spec = parse_task(f"run: echo x\n{key}: {shown}\n", default_name="fuzz")
    except TaskFileError as e:
        assert e.problems and str(e)
    else:
        _check_bounded(spec)
