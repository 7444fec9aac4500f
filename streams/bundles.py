"""Bundles and kits: a bundle SKU is a list of component SKUs, and is reserved as one. Pure.

The rules are a TOML file (``OMS_BUNDLES_FILE``), one table per bundle SKU::

    [bundle."GIFTSET-01"]
    components = [{sku = "EARBUD-PRO-BLK", units = 1}, {sku = "CABLE-USBC-1M", units = 2}]

An order line for a bundle becomes one hold per component (``order_key|line_id#component_sku``, line
quantity x units); streams/allocation.py counts the line reserved only when every component is, so a
bundle is never sold with a part missing. Components are plain SKUs: a bundle never contains another
bundle (list that bundle's components instead), so stock is always counted on real units.

Every problem in the file is reported at once, each naming the file, the bundle and the field (and
the line, when it can be found), so a bad file stops the process at start rather than mid-sale.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

#: the longest SKU the canonical records accept (schemas/order.py)
MAX_SKU_LENGTH = 128
#: units of one component in one bundle: keeps line quantity x units well inside an Avro int
MAX_UNITS = 10_000

_TOP_KEYS = ("bundle",)
_BUNDLE_KEYS = ("components",)
_COMPONENT_KEYS = ("sku", "units")


class BundleError(ValueError):
    """The bundle rules are invalid. One problem per line, each naming the file, bundle and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Component(NamedTuple):
    sku: str
    units: int


class Bundles(Mapping[str, tuple[Component, ...]]):
    """Bundle SKU -> its components, each (component SKU, units per bundle). Immutable and valid."""

    __slots__ = ("_kits", "source")

    def __init__(self, kits: Mapping[str, Iterable[tuple[str, int]]] | None = None, source: str = "<rules>") -> None:
        doc = {
            "bundle": {
                bundle: {"components": [{"sku": sku, "units": units} for sku, units in parts]}
                for bundle, parts in (kits or {}).items()
            }
        }
        self._kits = _validated(doc, source, "")
        self.source = source

    @classmethod
    def empty(cls) -> Bundles:
        """No bundles: every SKU is reserved as itself (no OMS_BUNDLES_FILE)."""
        return cls()

    @classmethod
    def load(cls, path: str | Path) -> Bundles:
        """Read and check a rules file. Raises BundleError naming the file, bundle and field."""
        source = str(path)
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BundleError([f"{source}: no such file"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleError([f"{source}: cannot be read: {exc}"]) from None
        return cls.parse(text, source)

    @classmethod
    def parse(cls, text: str, source: str = "<rules>") -> Bundles:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:  # its message says where: "(at line 3, column 5)"
            raise BundleError([f"{source}: not valid TOML: {exc}"]) from None
        bundles = cls.__new__(cls)
        bundles._kits = _validated(doc, source, text)
        bundles.source = source
        return bundles

    def __getitem__(self, sku: str) -> tuple[Component, ...]:
        return self._kits[sku]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kits)

    def __len__(self) -> int:
        return len(self._kits)

    def __repr__(self) -> str:
        return f"Bundles({dict(self._kits)!r}, source={self.source!r})"


def _validated(doc: dict[str, Any], source: str, text: str) -> dict[str, tuple[Component, ...]]:
    problems: list[str] = []
    for key in doc:
        if key not in _TOP_KEYS:
            problems.append(f"{source}: unknown key {key!r} at the top level{_hint(key, _TOP_KEYS)}")
    table = doc.get("bundle", {})
    if not isinstance(table, dict):
        problems.append(f'{source}: bundle: must be tables like [bundle."SKU"], got {_kind(table)}')
        table = {}
    kits: dict[str, tuple[Component, ...]] = {}
    for bundle, body in table.items():
        where = f"{source}: bundle {bundle!r}{_line(text, bundle)}"
        found = [f"{where}: {problem}" for problem in _sku_problems(bundle)]
        if not isinstance(body, dict):
            problems += [*found, f"{where}: must be a table with components, got {_kind(body)}"]
            continue
        for key in body:
            if key not in _BUNDLE_KEYS:
                found.append(f"{where}: unknown key {key!r}{_hint(key, _BUNDLE_KEYS)}")
        parts = body.get("components")
        if parts is None:
            found.append(f'{where}: components: missing; give components = [{{sku = "...", units = 1}}, ...]')
        elif not isinstance(parts, list):
            found.append(f"{where}: components: must be an array of {{sku, units}} tables, got {_kind(parts)}")
        elif not parts:
            found.append(f"{where}: components: empty; a bundle needs at least one component")
        else:
            components, more = _components(bundle, parts, table)
            found += [f"{where}: {problem}" for problem in more]
            kits[bundle] = components
        problems += found
    if problems:
        raise BundleError(problems)
    return kits


def _components(bundle: str, parts: list[Any], bundles: dict[str, Any]) -> tuple[tuple[Component, ...], list[str]]:
    problems: list[str] = []
    components: list[Component] = []
    first: dict[str, int] = {}
    for i, part in enumerate(parts):
        field = f"components[{i}]"
        if not isinstance(part, dict):
            problems.append(f"{field}: must be a table {{sku = ..., units = ...}}, got {_kind(part)}")
            continue
        for key in part:
            if key not in _COMPONENT_KEYS:
                problems.append(f"{field}: unknown key {key!r}{_hint(key, _COMPONENT_KEYS)}")
        sku, units = part.get("sku"), part.get("units")
        if sku is None:
            problems.append(f"{field}.sku: missing")
        elif not isinstance(sku, str):
            problems.append(f"{field}.sku: must be a string, got {_kind(sku)}")
        else:
            problems += [f"{field}.sku: {problem}" for problem in _sku_problems(sku)]
            if sku == bundle:
                problems.append(f"{field}.sku: {sku!r} is the bundle itself; a bundle cannot contain itself")
            elif sku in bundles:
                problems.append(
                    f"{field}.sku: {sku!r} is itself a bundle; bundles do not nest, list its components here instead"
                )
            if sku in first:
                problems.append(
                    f"{field}.sku: {sku!r} is listed twice (also components[{first[sku]}]); "
                    "list it once with the total units"
                )
            first.setdefault(sku, i)
        if units is None:
            problems.append(f"{field}.units: missing; how many of this SKU one bundle holds")
        elif not isinstance(units, int) or isinstance(units, bool):
            problems.append(f"{field}.units: must be a whole number, got {_kind(units)}")
        elif not 1 <= units <= MAX_UNITS:
            problems.append(f"{field}.units: must be at least 1 and at most {MAX_UNITS}, got {units}")
        if isinstance(sku, str) and isinstance(units, int):
            components.append(Component(sku, units))
    return tuple(components), problems


def _sku_problems(sku: str) -> list[str]:
    if not sku or sku != sku.strip():
        return [f"SKU {sku!r} must be non-empty, without spaces around it"]
    if "|" in sku:
        return [f"SKU {sku!r} must not contain '|' (it separates the order key in hold ids)"]
    if len(sku) > MAX_SKU_LENGTH:
        return [f"SKU {sku[:20]!r}... is longer than {MAX_SKU_LENGTH} characters"]
    return []


def _line(text: str, bundle: str) -> str:
    """`` (line N)`` where the bundle's table starts, when it can be found in the text."""
    if not bundle or not text:
        return ""
    name = "|".join(re.escape(q) for q in (f'"{bundle}"', f"'{bundle}'", bundle))
    header = re.compile(rf"^[ \t]*\[[ \t]*bundle[ \t]*\.[ \t]*(?:{name})[ \t]*\]", re.M)
    inline = re.compile(rf"^[ \t]*(?:bundle[ \t]*\.[ \t]*)?(?:{name})[ \t]*[.=]", re.M)
    match = header.search(text) or inline.search(text)
    return f" (line {text.count(chr(10), 0, match.start()) + 1})" if match else ""


def _hint(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    ) + (f" ({value!r})" if isinstance(value, str | int | float | bool) else "")
