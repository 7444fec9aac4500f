"""faust codecs built on schemas.codec: faust topics read and write the same Avro bytes as everyone."""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from schemas.codec import codec


class AvroRecordCodec(codecs.Codec):
    """dict <-> Avro single-object bytes for one schema name."""

    def __init__(self, schema_name: str) -> None:
        super().__init__(schema_name=schema_name)
        self._codec = codec(schema_name)

    def _dumps(self, obj: Any) -> bytes:
        return self._codec.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self._codec.decode(s)


_NAMES = {"oms_order_event": "order_event", "oms_dead_letter": "dead_letter"}


def register_codecs() -> None:
    """Make ``value_serializer='oms_order_event'`` (and friends) known to faust. Idempotent."""
    for name, schema_name in _NAMES.items():
        codecs.register(name, AvroRecordCodec(schema_name))
