"""A site file's problems, each with the line it is on and the fix, for ``floodwatch check`` and ``serve``.

pydantic reports where a value broke a rule as a path (``stations.3.levels``);
an officer editing a TOML file needs the line. :func:`locate` maps paths to
line numbers by reading the file's tables and keys (the subset of TOML a
site file uses: tables, arrays of tables, keys, dotted keys, inline tables,
multi-line arrays and strings), and :func:`explain` turns a
``ValidationError`` into one sentence per problem::

    /etc/floodwatch/site.toml:88: stations[4] (LP-W05): unknown key 'mount_heigth_m'; did you mean 'mount_height_m'?

Pure functions over text and plain data; nothing here opens a server.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=""")
_INLINE_KEY = re.compile(r"""(?:[{,]\s*)([A-Za-z0-9_\-]+)\s*=""")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a site: where (a settings path), what, and how to fix it."""

    loc: Loc
    message: str


def _parts(dotted: str) -> list[str]:
    return [p.strip().strip("\"'") for p in re.findall(r"""(?:"[^"]*"|'[^']*'|[^.]+)""", dotted)]


def _open_brackets(value: str) -> int:
    """How many ``[`` / ``{`` a value leaves open (strings and comments skipped)."""
    depth, quote = 0, ""
    i = 0
    while i < len(value):
        c = value[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":
            break
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return depth


def locate(text: str) -> dict[Loc, int]:
    """Line numbers (1-based) of every table, array-of-tables entry and key in a site file's TOML."""
    lines: dict[Loc, int] = {}
    counts: dict[Loc, int] = {}
    table: Loc = ()
    open_depth = 0
    open_string = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if open_string:
            if open_string in line:
                open_string = ""
            continue
        if open_depth > 0:
            open_depth += _open_brackets(line)
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            names = _parts(header.group(2))
            path: list[str | int] = []
            for i, name in enumerate(names):
                path.append(name)
                is_last = i == len(names) - 1
                if is_last and header.group(1) == "[[":
                    index = counts.get(tuple(path), 0)
                    counts[tuple(path)] = index + 1
                    path.append(index)
                elif not is_last and tuple(path) in counts:
                    path.append(counts[tuple(path)] - 1)  # a sub-table of the latest entry
            table = tuple(path)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if not key:
            continue
        loc = table + tuple(_parts(key.group(1)))
        for k in range(len(table) + 1, len(loc) + 1):
            lines.setdefault(loc[:k], number)
        value = line[key.end():].strip()
        if value.startswith(('"""', "'''")) and value.count(value[:3]) == 1:
            open_string = value[:3]
        else:
            open_depth = _open_brackets(value)
            if value.startswith("{"):
                for inner in _INLINE_KEY.findall(value):
                    lines.setdefault(loc + (inner,), number)
    return lines


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, else of its nearest enclosing table or key."""
    for k in range(len(loc), 0, -1):
        if loc[:k] in lines:
            return lines[loc[:k]]
    return None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside ``X``, ``X | None`` or ``list[X]``, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin in (list, Union) or str(origin) == "<class 'types.UnionType'>":
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The settings model a path points into (``('stations', 3, 'levels')`` -> WarningLevels)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        model = _model_of(field.annotation)
    return model


def describe_loc(loc: Loc, raw: dict[str, Any]) -> str:
    """``stations[3] (LP-W04) levels`` for a path, naming list entries by their id when they have one."""
    out: list[str] = []
    node: Any = raw
    for part in loc:
        if isinstance(part, int):
            entry = node[part] if isinstance(node, list) and part < len(node) else None
            ident = entry.get("id") if isinstance(entry, dict) else None
            out[-1] = f"{out[-1]}[{part}]" + (f" ({ident})" if ident else "") if out else f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            out.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return " ".join(out) if out else "(top level)"


def _env_name(loc: Loc, prefix: str) -> str:
    return prefix + "__".join(str(p).upper() for p in loc if not isinstance(p, int))


def problems_from(exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """One :class:`Problem` per pydantic error, with a fix in words an officer can act on."""
    out: list[Problem] = []
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        ctx = err.get("ctx") or {}
        if kind == "registry" and "problems" in ctx:
            out += [Problem(tuple(p[0]), p[1]) for p in ctx["problems"]]
            continue
        if kind == "extra_forbidden":
            parent = model_at(root, loc[:-1])
            hint = did_you_mean(str(loc[-1]), parent.model_fields) if parent is not None else ""
            out.append(Problem(loc, f"unknown key {loc[-1]!r}{hint or '; remove it or check its spelling'}"))
        elif kind == "missing":
            out.append(Problem(loc, f"{loc[-1]!r} is required here; add it"))
        else:
            message = err["msg"].removeprefix("Value error, ")
            if kind not in ("value_error", "assertion_error"):
                message += f" (got {err.get('input')!r})"
            out.append(Problem(loc, message))
    return out


def render(problems: Sequence[Problem], config_file: Path, *, env_prefix: str = "FLOODWATCH_") -> list[str]:
    """``file:line: where: what`` for each problem (a value from the environment names its variable)."""
    try:
        text = Path(config_file).read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError):
        text, raw = "", {}
    lines = locate(text)
    rendered: list[tuple[int, str]] = []
    for p in problems:
        where = describe_loc(p.loc, raw)
        variable = _env_name(p.loc, env_prefix)
        if p.loc and variable in os.environ and p.loc not in lines:
            rendered.append((0, f"{variable} (environment): {where}: {p.message}"))
            continue
        number = line_of(lines, p.loc)
        prefix = f"{config_file}:{number}" if number is not None else f"{config_file}"
        rendered.append((number or 0, f"{prefix}: {where}: {p.message}"))
    return [text for _, text in sorted(rendered, key=lambda item: item[0])]


def toml_syntax_error(config_file: Path) -> str | None:
    """tomllib's own message (it names the line and column) when the file is not valid TOML."""
    try:
        tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        return (f"{config_file}: not valid TOML: {exc}; fix the syntax there "
                "(quotes, brackets, '=' between key and value)")
    except (OSError, UnicodeDecodeError) as exc:
        return f"{config_file} cannot be read: {exc}"
    return None
