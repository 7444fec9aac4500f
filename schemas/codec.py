"""Avro encoding of our records, schemaless with the schema's identity in a 10-byte header.

The framing is Avro's standard *single-object encoding*: ``C3 01`` then the 8-byte CRC-64-AVRO
fingerprint of the writer schema (little endian), then the schemaless Avro body. A reader looks the
fingerprint up among every ``.avsc`` we ship and resolves writer -> reader schema, so a consumer on an
older or newer schema version keeps working (fields added with defaults, fields it does not know).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
_FILE = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.avsc$")


class CodecError(ValueError):
    """Bytes that are not a record we can read: wrong framing, unknown schema, or a corrupt body."""


@dataclass(frozen=True)
class SchemaVersion:
    """One ``.avsc`` file: logical name (file stem), version, parsed schema and its fingerprint."""

    name: str
    version: int
    parsed: Any
    fingerprint: bytes

    @property
    def label(self) -> str:
        return f"{self.name}.v{self.version}"


def schema_version(name: str, version: int, schema: dict[str, Any]) -> SchemaVersion:
    """Build a SchemaVersion from a schema dict (used for our files, and by tests for future versions)."""
    parsed = parse_schema(schema, _write_hint=False)
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(name, version, parsed, bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")))


@cache
def shipped_schemas() -> tuple[SchemaVersion, ...]:
    """Every schema version in schemas/avro, the contract of the topics."""
    out = []
    for entry in resources.files("schemas").joinpath("avro").iterdir():
        match = _FILE.match(entry.name)
        if match:
            schema = json.loads(entry.read_text(encoding="utf-8"))
            out.append(schema_version(match["name"], int(match["version"]), schema))
    return tuple(sorted(out, key=lambda s: (s.name, s.version)))


def latest(name: str) -> SchemaVersion:
    """The newest shipped version of a schema; writers use it."""
    versions = [s for s in shipped_schemas() if s.name == name]
    if not versions:
        raise KeyError(f"no schema named {name!r} in schemas/avro")
    return versions[-1]


class AvroCodec:
    """Encode with one writer schema; decode anything written with a known version of the same name.

    ``known`` adds versions beyond the shipped files (a rolling upgrade deploys a new ``.avsc`` to
    readers before any writer uses it; tests pass future versions here).
    """

    def __init__(self, name: str, writer: SchemaVersion | None = None, known: tuple[SchemaVersion, ...] = ()) -> None:
        versions = [s for s in (*shipped_schemas(), *known) if s.name == name]
        if not versions:
            raise KeyError(f"no schema named {name!r} in schemas/avro")
        self.name = name
        self.writer = writer or max(versions, key=lambda s: s.version)
        self._by_fingerprint = {s.fingerprint: s for s in (*versions, self.writer)}
        self._header = MAGIC + self.writer.fingerprint

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        try:
            schemaless_writer(buf, self.writer.parsed, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise CodecError(f"record does not fit {self.writer.label}: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if not data or not MAGIC.startswith(data[:2]):
            raise CodecError(
                f"not an Avro single-object record (expected header C3 01, got {data[:2].hex() or 'nothing'})"
            )
        if len(data) < HEADER_LEN:
            raise CodecError(f"record is {len(data)} bytes, shorter than the {HEADER_LEN}-byte header: truncated?")
        writer = self._by_fingerprint.get(data[2:HEADER_LEN])
        if writer is None:
            raise CodecError(
                f"unknown {self.name} schema fingerprint {data[2:HEADER_LEN].hex()}: "
                "written by a newer producer? upgrade this reader"
            )
        try:
            # same schema: no resolution (fastavro would compare the two schemas on every record)
            reader = None if writer is self.writer else self.writer.parsed
            record = schemaless_reader(io.BytesIO(data[HEADER_LEN:]), writer.parsed, reader)
        except Exception as exc:  # fastavro raises a mix of EOFError, ValueError, SchemaResolutionError
            raise CodecError(f"corrupt {writer.label} body: {exc}") from exc
        if not isinstance(record, dict):
            raise CodecError(f"{writer.label} body is not a record")
        return record


def decode_any(data: bytes, names: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """Decode a record from a topic that carries several schemas; returns (schema name, record).

    The fingerprint in the header says which schema wrote it, so one topic can carry e.g. full
    orders and status updates, in order, under one key.
    """
    if len(data) >= HEADER_LEN and data[:2] == MAGIC:
        fingerprint = data[2:HEADER_LEN]
        for name in names:
            if any(s.fingerprint == fingerprint for s in shipped_schemas() if s.name == name):
                return name, codec(name).decode(data)
    return names[0], codec(names[0]).decode(data)  # raises the precise CodecError


def decode_records(data: bytes, single: str, batch: str, items: str) -> list[dict[str, Any]]:
    """A record of a topic that carries single records or batches of them: the records, in order.

    ``batch`` is the schema of a batch, whose field ``items`` is an array of ``single`` records.
    """
    name, record = decode_any(data, (single, batch))
    return list(record[items]) if name == batch else [record]


@cache
def codec(name: str) -> AvroCodec:
    """The shared codec for a schema name."""
    return AvroCodec(name)
