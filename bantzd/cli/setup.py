"""Commands around the queue rather than in it: init, demo and report (SPEC sections 1, 6, 7).

Heavier modules (config, the supervisor loop) are imported inside the commands, so
`bantzd status` and friends do not pay for them at start-up.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import click

from bantzd.cli import get_home, main
from bantzd.errors import EXIT_FAILURE
from bantzd.paths import Home


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the home folder and config.toml (safe to run again: nothing is overwritten)."""
    from bantzd.cli import config_problem
    from bantzd.config import write_default_config

    home = get_home(ctx)
    existed = home.root.is_dir()
    home.ensure()
    click.echo(f"{'home folder exists' if existed else 'created home folder'}: {home.root}")
    if write_default_config(home.config):
        click.echo(f"created {home.config} with every setting at its default")
    else:
        click.echo(f"{home.config} exists; left unchanged")
        problem = config_problem(home)
        if problem is not None:
            click.echo(f"bantzd: {problem}", err=True)
            click.echo(
                "bantzd: 'bantzd run' refuses to start until this is fixed; then run "
                "`bantzd doctor`",
                err=True,
            )
            sys.exit(EXIT_FAILURE)
    click.echo(next_steps(home))


def next_steps(home: Home) -> str:
    """What `init` tells a person to do next: the exact crontab line (the absolute path of
    this bantzd, not a guess like ~/.local/bin) and the doctor that checks it all."""
    from bantzd.cli.schedule import command_line, crontab_line

    return (
        "next steps:\n"
        "  1. schedule the night: run `crontab -e` and add this line\n"
        f"       {crontab_line(home)}\n"
        "     (or at once: (crontab -l 2>/dev/null; "
        f"{command_line(home, 'doctor', '--cron')}) | crontab -)\n"
        f"  2. check everything the night needs: {command_line(home, 'doctor')}\n"
        f"  3. queue work: put task files into {home.spool}, or `bantzd submit FILE`, "
        "or `bantzd add -- COMMAND`"
    )


def example_files() -> list[tuple[str, bytes]]:
    """The bundled example tasks (bantzd/examples/*.yaml) as (file name, content), by name."""
    folder = resources.files("bantzd").joinpath("examples")
    found = [
        (entry.name, entry.read_bytes())
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith((".yaml", ".yml"))
    ]
    return sorted(found)


def copy_examples(home: Home) -> list[str]:
    """Place the examples into the spool the safe way (temp name, then rename); their names."""
    names = []
    for name, data in example_files():
        tmp = home.spool / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, home.spool / name)
        names.append(name)
    return names


@main.command()
@click.option(
    "--llm",
    "llm_url",
    metavar="URL",
    help="An OpenAI-compatible endpoint (ending in /v1): also run the LLM examples on it.",
)
@click.option("--llm-model", metavar="NAME", help="Model for --llm (default: the first listed).")
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm"]),
    default="local",
    show_default=True,
    help="Where the examples run: slurm submits each as a job to the cluster that answers.",
)
@click.pass_context
def demo(ctx: click.Context, llm_url: str | None, llm_model: str | None, executor: str) -> None:
    """Run the bundled example tasks in a fresh temporary home and print the report.

    The LLM examples run too when an endpoint answers: --llm URL, or the [llm] base_url of
    your own config.toml. With --executor slurm they run as Slurm jobs."""
    from bantzd.config import write_default_config
    from bantzd.reports.morning import write_report
    from bantzd.supervisor.loop import run_supervisor

    cluster = None
    if executor == "slurm":
        from bantzd.cli.slurmdemo import check_cluster

        cluster = check_cluster()  # before anything is made: a clear error, exit 2
    endpoint, why_not = _demo_endpoint(get_home(ctx), llm_url, llm_model)
    home = Home(Path(tempfile.mkdtemp(prefix="bantzd-demo-")))
    home.ensure()
    write_default_config(home.config)
    # The demo shows the examples now: a busy machine's load must not hold them back.
    text = home.config.read_text().replace("max_load = 1.5", "max_load = 1000.0", 1)
    home.config.write_text(text)
    if cluster is not None:
        from bantzd.cli.slurmdemo import use_slurm

        use_slurm(home)
    names = copy_examples(home)
    stop_site = None
    if endpoint is not None:
        from bantzd.cli.agentdemo import add_agent_examples

        names += _add_llm_examples(home, endpoint)
        agent_names, stop_site = add_agent_examples(home)
        names += agent_names
    click.echo(f"demo home: {home.root}")
    click.echo(f"running {len(names)} example tasks: {', '.join(names)}")
    if cluster is not None:
        click.echo(f"as Slurm jobs: {cluster}")
    if why_not:
        click.echo(why_not)
    for line in _fire_example_schedules(home):
        click.echo(line)
    try:
        code = run_supervisor(home, once=True)
    finally:
        if stop_site is not None:
            stop_site()  # the pages site of the agent examples
    path = write_report(home)
    click.echo(f"report: {path}\n")
    click.echo(path.read_text(), nl=False)
    click.echo(
        f"\nlook around: bantzd --home {home.root} list  (remove it with: rm -r {home.root})"
    )
    sys.exit(code)


def _fire_example_schedules(home: Home) -> list[str]:
    """Take the example schedules in and fire each once now, as `bantzd submit` and
    `bantzd schedule fire` would: a schedule's next firing is hours away, and the demo
    shows the task a firing makes. The lines to print."""
    import time

    from bantzd.queue.schedulefile import is_schedule_file
    from bantzd.supervisor import control

    lines = []
    for path in sorted(home.spool.glob("*.yaml")):
        if not is_schedule_file(path.read_bytes()):
            continue
        taken = control.send(home, "take", None, file=path.name)
        name = taken.get("schedule")
        if not isinstance(name, str):
            lines.append(f"{path.name}: {taken.get('message')}")
            continue
        fired = control.send(home, "schedule", None, op="fire", name=name, at=time.time())
        lines.append(f"{fired.get('message')}, as `bantzd schedule fire {name}` does")
    return lines


@dataclass(frozen=True)
class _Endpoint:
    base_url: str
    model: str
    api_key_env: str


def _demo_endpoint(
    user_home: Home, url: str | None, model: str | None
) -> tuple[_Endpoint | None, str | None]:
    """The endpoint the demo's LLM examples use, or None and a line saying how to get one."""
    from bantzd.config import ConfigError, config_from_mapping, load_config

    try:
        config = load_config(user_home.config).llm
    except ConfigError:
        config = config_from_mapping({}).llm  # a broken config.toml is not the demo's business
    base_url = (url or config.base_url).rstrip("/")
    how = (
        "LLM examples skipped: {}. To include them, point the demo at an OpenAI-compatible "
        "server (llama.cpp, vLLM, Ollama, a hosted API): bantzd demo --llm "
        "http://127.0.0.1:8080/v1 (no model at hand? from a checkout, "
        "`python tests/llm_server.py --port 8080` is a stand-in)"
    )
    try:
        import openai  # noqa: F401
    except ImportError:
        return None, how.format("the openai package is missing (pip install 'bantzd[llm]')")
    listed, error = _list_models(base_url, os.environ.get(config.api_key_env or "", ""))
    if error is not None:
        return None, how.format(f"no answer from {base_url}/models ({error})")
    if model:
        chosen = model
    elif not url or config.model in listed or not listed:
        chosen = config.model  # your own endpoint: your own model
    else:
        chosen = listed[0]  # another server: the first model it has
    return _Endpoint(base_url, chosen, config.api_key_env), None


def _list_models(base_url: str, api_key: str, timeout: float = 3.0) -> tuple[list[str], str | None]:
    """The model ids `GET base_url/models` lists, or an error; quick, for a local probe."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{base_url}/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read(1 << 20) or b"{}")
    except urllib.error.HTTPError as e:
        return [], f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return [], str(getattr(e, "reason", None) or e)
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return [], None
    return [str(m["id"]) for m in entries if isinstance(m, dict) and m.get("id")], None


def _add_llm_examples(home: Home, endpoint: _Endpoint) -> list[str]:
    """Point the demo home at the endpoint, copy the sample notes, and spool the LLM
    examples with their `cwd` set to that copy."""
    import re
    import shutil

    folder = resources.files("bantzd").joinpath("examples", "llm")
    notes = home.root / "demo-notes"
    with resources.as_file(folder.joinpath("notes")) as src:
        shutil.copytree(src, notes)
    text = home.config.read_text()
    text = re.sub(
        r'^base_url = ".*"', f"base_url = {_toml(endpoint.base_url)}", text, count=1, flags=re.M
    )
    text = re.sub(r'^model = ".*"', f"model = {_toml(endpoint.model)}", text, count=1, flags=re.M)
    text = re.sub(
        r'^api_key_env = ".*"',
        f"api_key_env = {_toml(endpoint.api_key_env)}",
        text,
        count=1,
        flags=re.M,
    )
    text += "\n[limits.llm]\nconcurrent = 1\nper_minute = 120\n"
    home.config.write_text(text)
    names = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yaml", ".yml")):
            continue
        data = entry.read_text(encoding="utf-8")
        data = re.sub(r"^cwd: .*$", f"cwd: {_toml(str(notes))}", data, count=1, flags=re.M)
        tmp = home.spool / f".{entry.name}.tmp"
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, home.spool / entry.name)
        names.append(entry.name)
    return names


def _toml(text: str) -> str:
    """A quoted string that TOML and YAML both read back as `text`."""
    import json

    return json.dumps(text)


@main.command()
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date the report is named after (default: today).",
)
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the report; write nothing.")
@click.option(
    "--notify",
    "send",
    is_flag=True,
    help="Also send the `report` notification ([notify] in config.toml).",
)
@click.pass_context
def report(ctx: click.Context, day: datetime | None, to_stdout: bool, send: bool) -> None:
    """Write the morning report for everything since the previous one (reports/DATE.md)."""
    from bantzd.reports.morning import publish_report, report_text, write_report

    home = get_home(ctx)
    date = day.date() if day else None
    if to_stdout:
        click.echo(report_text(home, date=date), nl=False)
    elif send:
        click.echo(str(publish_report(home, date=date)))
    else:
        click.echo(str(write_report(home, date=date)))
