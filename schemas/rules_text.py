"""Where things are in a TOML rules file, so that every complaint about it can name the line.

``tomllib`` gives positions only for syntax errors; values have none. ``TomlLines`` scans the text
once for table headers (``[a.b]``, ``[[a]]`` with their array index) and keys, and ``locate`` turns a
field path such as ``("node", 2, "capacity_per_hour")`` or ``("market", "SG", "cod_cap_minor")`` into
the line that defines it. Used by every rules file we read (channel stock, routing).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from typing import Any

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")
TOML_AT = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


class TomlLines:
    """Where tables and keys are in the text, for messages (tomllib gives no positions for values)."""

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        current: tuple[str, int] = ("", 0)
        arrays: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            header = _HEADER.match(line)
            if header:
                name = ".".join(part.strip().strip("\"'") for part in header[2].split("."))
                index = arrays.get(name, 0) if header[1] == "[[" else 0
                if header[1] == "[[":
                    arrays[name] = index + 1
                current = (name, index)
                self.tables.setdefault(current, number)
                continue
            key = _KEY.match(line)
            if key:
                self.keys.setdefault((*current, key[1] or key[2] or key[3]), number)

    def line(self, table: str, index: int = 0, key: str | None = None) -> int | None:
        if key is not None and (table, index, key) in self.keys:
            return self.keys[(table, index, key)]
        return self.tables.get((table, index))

    def locate(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest table or key on ``path`` that the text defines, if any."""
        best: int | None = None
        table: list[str] = []
        index = 0
        for part in path:
            if isinstance(part, int):
                index = part
                found = self.line(".".join(table), index)
                best = found or best
                continue
            key_line = self.line(".".join(table), index, part)
            if key_line is not None:
                best = key_line
            table.append(part)
            index = 0
            found = self.line(".".join(table), 0)
            best = found or best
        return best


class TomlError(ValueError):
    """A rules text that is not TOML; ``line``/``column`` say where, when tomllib told."""

    def __init__(self, source: str, message: str, line: int | None, column: int | None) -> None:
        where = f"line {line}, column {column}: " if line else ""
        super().__init__(f"{source}: {where}not valid TOML: {message}")
        self.source, self.message, self.line, self.column = source, message, line, column


def load_toml(text: str, source: str) -> dict[str, Any]:
    """``tomllib.loads`` with its position pulled out of the message into a ``TomlError``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = TOML_AT.match(str(exc))
        if at:
            raise TomlError(source, at["msg"], int(at["line"]), int(at["col"])) from exc
        raise TomlError(source, str(exc), None, None) from exc
