"""config.toml's problems in words a person acts on: which line, what is wrong there.

tomllib says `Cannot declare ('throttle',) twice (at line 3, column 10)` or `Invalid value`;
a person wants "the table [throttle] appears twice (first at line 1)" and the line itself.
The settings checks in bantzd.config name a key (`throttle.max_load`); `key_line` finds the
line that sets it, so a person editing the file goes straight there.

Imported only on error paths: a valid config.toml never pays for this module.
"""

from __future__ import annotations

import re
import tomllib

_WHERE = re.compile(r"^(.*) \(at (?:line (\d+), column (\d+)|end of document)\)$", re.DOTALL)
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]*?)\s*(\]\]?)?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=(.*)$"""
)
# An unquoted value that is meant as a text: a duration (30s, 1h30m), a size (2GiB), a word.
_BARE_TEXT = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")
_LITERALS = re.compile(
    r"^(?:[+-]?\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|[+-]?(?:inf|nan))$"
)


def toml_problem(text: str, error: tomllib.TOMLDecodeError) -> tuple[int | None, str]:
    """(line, words) for a TOML syntax error in `text`: the line to look at (None when the
    error names none and the text is empty) and what is wrong there, in plain words."""
    m = _WHERE.match(str(error))
    message = m.group(1) if m else str(error)
    lines = text.splitlines()
    if m and m.group(2):
        line = int(m.group(2))
    else:  # "at end of document": the last line that is not blank
        line = next((i + 1 for i in range(len(lines) - 1, -1, -1) if lines[i].strip()), None)
    source = lines[line - 1] if line and line <= len(lines) else ""
    line, words = _explain(message, line, source, lines)
    return line, words


def show_line(text: str, line: int | None) -> str:
    """`    3 | [throttle`: the line as it is in the file, for the message's second line."""
    lines = text.splitlines()
    if line is None or not 1 <= line <= len(lines):
        return ""
    shown = lines[line - 1]
    if len(shown) > 100:
        shown = shown[:97] + "..."
    shown = "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in shown)
    return f"\n    {line} | {shown}"


def _explain(
    message: str, line: int | None, source: str, lines: list[str]
) -> tuple[int | None, str]:
    stripped = source.strip()
    key = _key_of(source)
    value = _value_of(source)
    if message.startswith("Expected ']' at the end of a table declaration"):
        return line, f"the table header {stripped} is missing its closing ']' (write [NAME])"
    if message.startswith("Expected ']]' at the end of an array declaration"):
        return line, f"the header {stripped} is missing its closing ']]' (write [[NAME]])"
    declared = re.match(r"Cannot declare \((.*)\) twice", message)
    if declared:
        name = ".".join(p.strip().strip("'\"") for p in declared.group(1).split(",") if p.strip())
        first = _header_line(lines, name, before=line)
        where = f" (first at line {first})" if first else ""
        return line, (
            f"the table [{name}] appears twice{where}; keep one and put all its settings there"
        )
    if message.startswith("Cannot overwrite a value"):
        header = _HEADER.match(source)
        if header and header.group(3):
            name = _dotted(header.group(2))
            return line, f"[{name}] is a table here, but {name} already has a value above"
        if key:
            first = key_line("\n".join(lines[: (line or 1) - 1]), _full_key(lines, line, key))
            where = f" (first at line {first})" if first else ""
            return line, f"{key} is set twice{where}; keep one"
        return line, "a setting is given twice; keep one"
    if message.startswith(("Invalid value", "Expected newline or end of document")):
        if key is None and re.match(r"^\s*\[[^\]]*\]+\s*[^\s#]", source):
            return line, "unexpected text after the table header; a header stands alone on its line"
        if key is not None and value == "":
            return line, f"{key} has no value after '=' (a text needs quotes: {key} = \"...\")"
        if value in ("True", "False", "TRUE", "FALSE"):
            return line, f"{key}: write {value.lower()} in lower case"
        if value is not None and _BARE_TEXT.match(value) and not _LITERALS.match(value):
            return line, f'{key}: the value {value} needs quotes: {key} = "{value}"'
        if value is not None and message.startswith("Expected newline"):
            return line, (
                f"{key}: unexpected text after the value; a text needs quotes around all of it"
            )
        return line, f"{key or 'this line'}: not a value TOML knows (a text needs quotes)"
    if message.startswith("Expected '=' after a key"):
        if key is None and "=" in stripped and " " in stripped.split("=")[0].strip():
            return line, (
                "a setting needs '=' between its name and its value (NAME = VALUE), and a name "
                "has no spaces"
            )
        return line, "a setting needs '=' between its name and its value (NAME = VALUE)"
    if message.startswith("Illegal character '\\n'") or message.startswith(
        ("Unterminated string", 'Expected "\'"', "Expected '\"'")
    ):
        return line, "a quoted text is not closed: add the closing quote on the same line"
    if message.startswith("Illegal character"):
        return line, f"a control character in a text ({message.removeprefix('Illegal ')})"
    if message.startswith("Unclosed array"):
        start = _opened_at(lines, line, "[")
        return start or line, "a list opened with '[' is not closed with ']'"
    if message.startswith("Unclosed inline table"):
        return line, "a table opened with '{' is not closed with '}' on the same line"
    if message.startswith("Unescaped '\\'"):
        return line, (
            "a backslash in a \"...\" text: write it twice (\\\\), or use single quotes ('...')"
        )
    if message.startswith(("Invalid statement", "Invalid initial character for a key")):
        return line, "neither a setting (NAME = VALUE) nor a table header ([NAME])"
    return line, message[:1].lower() + message[1:]


def key_line(text: str, dotted: str) -> int | None:
    """The line (1-based) of `text` that sets the key `dotted` (`throttle.max_load`), else the
    line of its nearest enclosing table or key (`[throttle]`); None when nothing matches."""
    best: tuple[int, int] | None = None  # (length of the matched prefix, line)
    want = dotted.split(".")
    table: list[str] = []
    for number, source in enumerate(text.splitlines(), 1):
        header = _HEADER.match(source)
        if header and header.group(3) and not _KEY.match(source):
            table = _dotted(header.group(2)).split(".")
            candidate = table
        else:
            key = _key_of(source)
            if key is None:
                continue
            candidate = [*table, *key.split(".")]
        n = _common(candidate, want)
        if n == len(candidate) and (best is None or n > best[0]):
            best = (n, number)
            if n == len(want):
                return number
    return best[1] if best else None


def _common(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _key_of(source: str) -> str | None:
    m = _KEY.match(source)
    return _dotted(m.group(1)) if m else None


def _value_of(source: str) -> str | None:
    """The text after `=`, without a trailing comment (when it is not inside quotes)."""
    m = _KEY.match(source)
    if not m:
        return None
    value = m.group(2).strip()
    if value[:1] not in ('"', "'"):
        value = value.split("#", 1)[0].strip()
    return value


def _dotted(name: str) -> str:
    return ".".join(p.strip().strip("'\"") for p in name.split("."))


def _full_key(lines: list[str], line: int | None, key: str) -> str:
    """`key` with the table it is under at `line` (the last header above it)."""
    for source in reversed(lines[: (line or 1) - 1]):
        header = _HEADER.match(source)
        if header and header.group(3) and not _KEY.match(source):
            return f"{_dotted(header.group(2))}.{key}"
    return key


def _header_line(lines: list[str], name: str, *, before: int | None) -> int | None:
    for number, source in enumerate(lines[: (before or 1) - 1], 1):
        header = _HEADER.match(source)
        if header and header.group(3) and _dotted(header.group(2)) == name:
            return number
    return None


def _opened_at(lines: list[str], line: int | None, opener: str) -> int | None:
    """The line above `line` whose value opens with `opener` and is never closed."""
    for number in range(min(line or len(lines), len(lines)), 0, -1):
        value = _value_of(lines[number - 1])
        if value is not None and value.startswith(opener):
            return number
    return None
