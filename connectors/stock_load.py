"""``oms stock load FILE.csv``: an initial or periodic stock count, as versioned snapshots.

The file is UTF-8 CSV with a header: ``sku,warehouse,on_hand`` and optionally ``version``. It is
loaded whole or not at all: every problem is reported with its line and column, and nothing is
produced until the file is clean, so an operator never has half a count in the system.

Each row becomes a ``StockAdjustment`` snapshot on inventory.adjustments, keyed by SKU. Its id is the
file's content hash plus the line, so loading the same file twice applies once; its version is the
``version`` column, else ``--version``, else the file's modification time, so an older count never
overwrites a newer one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer
from pydantic import ValidationError

from oms.settings import Settings
from schemas.order import StockAdjustment
from schemas.topics import STOCK_ADJUSTMENTS

REQUIRED = ("sku", "warehouse", "on_hand")
OPTIONAL = ("version",)
MAX_PROBLEMS = 50
_COUNT = re.compile(r"^[0-9]{1,10}$")


class StockFileError(ValueError):
    """The file cannot be loaded; ``problems`` lists each with its line and column."""

    def __init__(self, path: str, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(
            f"{path}: not loaded, {len(problems)} problem(s); fix them and load the file again:\n  "
            + "\n  ".join(shown)
            + more
        )
        self.problems = problems


@dataclass(frozen=True)
class LoadSummary:
    rows: int
    skus: int
    warehouses: int
    units: int


def parse(data: bytes, path: str, tenant: str, default_version: int, now_ms: int) -> list[StockAdjustment]:
    """The file's rows as snapshots, or StockFileError listing every problem."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise StockFileError(path, [f"line {line}: not UTF-8 (byte {exc.start}); save the file as UTF-8"]) from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise StockFileError(path, [f"line 1: header needs {', '.join(REQUIRED)}; missing {', '.join(missing)}"])
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    problems = [f"line 1: unknown column {c!r}; columns are {', '.join(REQUIRED + OPTIONAL)}" for c in unknown]
    digest = hashlib.sha256(data).hexdigest()[:16]
    seen: dict[tuple[str, str], int] = {}
    out: list[StockAdjustment] = []
    for row in reader:
        line = reader.line_num
        values = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        if None in row:
            problems.append(f"line {line}: more fields than the header has columns")
            continue
        sku, warehouse, count = values.get("sku", ""), values.get("warehouse", ""), values.get("on_hand", "")
        row_problems = [f"line {line}: column {c}: empty" for c in REQUIRED if not values.get(c)]
        if count and not _COUNT.match(count):
            row_problems.append(f"line {line}: column on_hand: {count!r} is not a whole number of units >= 0")
        version_text = values.get("version", "")
        if version_text and not _COUNT.match(version_text):
            row_problems.append(f"line {line}: column version: {version_text!r} is not a whole number >= 0")
        if sku and warehouse and (sku, warehouse) in seen:
            first = seen[(sku, warehouse)]
            row_problems.append(f"line {line}: {sku} in {warehouse} is counted twice (also line {first})")
        if row_problems:
            problems += row_problems
            continue
        seen[(sku, warehouse)] = line
        try:
            out.append(
                StockAdjustment(
                    adjustment_id=f"csv:{digest}:{line}",
                    tenant=tenant,
                    sku=sku,
                    warehouse=warehouse,
                    kind="snapshot",
                    quantity=int(count),
                    version=int(version_text) if version_text else default_version,
                    cause="count",
                    source=f"csv:{Path(path).name}:{line}",
                    event_time_ms=now_ms,
                )
            )
        except ValidationError as exc:
            first_error = exc.errors()[0]
            problems.append(
                f"line {line}: column {first_error['loc'][0] if first_error['loc'] else '?'}: {first_error['msg']}"
            )
    if not out and not problems:
        problems.append("the file has a header but no rows")
    if problems:
        raise StockFileError(path, problems)
    return out


def load(settings: Settings, path: Path, version: int | None = None, dry_run: bool = False) -> LoadSummary:
    """Parse, then produce every row (acks=all) or nothing."""
    try:
        data = path.read_bytes()
        mtime_ms = int(path.stat().st_mtime * 1000)
    except OSError as exc:
        raise StockFileError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    rows = parse(
        data, str(path), settings.tenant, version if version is not None else mtime_ms, int(time.time() * 1000)
    )
    summary = LoadSummary(
        rows=len(rows),
        skus=len({r.sku for r in rows}),
        warehouses=len({r.warehouse for r in rows}),
        units=sum(r.quantity for r in rows),
    )
    if dry_run:
        return summary
    # murmur2_random is the partitioner of faust (aiokafka) and Java: a SKU's adjustments must land in the
    # partition where the inventory stage also receives that SKU's commands (co-partitioning).
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
        }
    )
    topic = STOCK_ADJUSTMENTS.full_name(settings.topic_prefix)
    errors: list[str] = []
    for row in rows:
        while True:
            try:
                producer.produce(
                    topic,
                    key=row.sku.encode(),
                    value=row.encode(),
                    on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
                )
                break
            except BufferError:  # the local queue is full (a large file): let deliveries drain
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    if left or errors:
        raise StockFileError(
            str(path),
            [f"Kafka did not acknowledge {left} row(s) ({errors[:3]}); the load is safe to repeat: same ids"],
        )
    return summary
