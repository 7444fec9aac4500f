"""Queries for analysts and operators: `oms sql`, `oms report`, `oms alerts list`.

A ClickHouse server is queried directly. The embedded chDB may be open in one process only, so the
process that owns it (`oms sink`, `oms demo`) also serves read-only queries on 127.0.0.1 and writes
its address next to the data directory; every other process sends its SQL there. With no owner
running, the command opens the embedded engine itself.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

from clickhouse_connect.driver.client import Client

from infra.clickhouse import chdb_owner, chdb_path, get_client
from infra.process import ServiceError
from oms.settings import Settings
from schemas.order import CURRENCY_EXPONENT

log = logging.getLogger(__name__)

#: readonly=2: no writes or DDL, but a query may still set its own settings (e.g. join_use_nulls)
READ_ONLY = {"readonly": 2, "max_execution_time": 60}


@dataclass(frozen=True)
class Result:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class QueryError(Exception):
    """ClickHouse refused the query (bad SQL, a write on the read-only path): its message, as is."""


def endpoint_file(settings: Settings) -> Path:
    path = chdb_path(settings)
    return path.parent / (path.name + ".query")


def run_query(client: Client, sql: str) -> Result:
    """JSONCompact keeps the column names of an empty answer too (the typed path does not on chDB)."""
    try:
        raw = client.raw_query(sql, fmt="JSONCompact", settings=READ_ONLY)
    except Exception as exc:  # clickhouse-connect wraps the server's message
        raise QueryError(_first_line(str(exc))) from exc
    if not raw.strip():  # a statement without a result set
        return Result((), ())
    answer = json.loads(raw)
    return Result(tuple(m["name"] for m in answer["meta"]), tuple(tuple(row) for row in answer["data"]))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if "DB::Exception" in line or "Code:" in line:
            return line.strip()
    return text.strip().splitlines()[0] if text.strip() else "query failed"


def _plain(value: Any) -> Any:
    """JSON-safe values for the wire and for --format json."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class _Handler(BaseHTTPRequestHandler):
    client: Client

    def do_POST(self) -> None:
        sql = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode("utf-8")
        try:
            result = run_query(self.client, sql)
            status = 200
            body: dict[str, Any] = {"columns": list(result.columns), "rows": [_plain(list(r)) for r in result.rows]}
        except QueryError as exc:
            status, body = 400, {"error": str(exc)}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("query server: " + format, *args)


@contextmanager
def serving_queries(settings: Settings) -> Iterator[str]:
    """In the process that owns the embedded ClickHouse: answer other processes' read-only queries.

    Yields the address; a server ClickHouse needs no such service (everyone connects to it). The
    service has a client of its own: on chDB a query's settings (readonly) stay with its client.
    """
    handler = type("Handler", (_Handler,), {"client": get_client(settings)})
    server = ThreadingHTTPServer(("127.0.0.1", settings.query_port), handler)
    server.daemon_threads = True
    address = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, name="query-server", daemon=True)
    thread.start()
    marker = endpoint_file(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{os.getpid()} {address}\n", encoding="utf-8")
    try:
        yield address
    finally:
        server.shutdown()
        server.server_close()
        if marker.read_text(encoding="utf-8").split()[0] == str(os.getpid()):
            marker.unlink(missing_ok=True)


def query(settings: Settings, sql: str, timeout_s: float = 90.0) -> Result:
    """Run read-only ``sql`` wherever the data is: the server, the chDB owner, or chDB opened here."""
    owner = chdb_owner(settings) if settings.clickhouse_embedded else None
    if owner is None or owner == os.getpid():
        return run_query(get_client(settings), sql)
    marker = endpoint_file(settings)
    try:
        pid, address = marker.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        raise ServiceError(
            f"the embedded ClickHouse is owned by process {owner}, which does not answer queries "
            f"(no {marker}). Stop it, or query while `oms sink` or `oms demo` runs."
        ) from None
    request = urllib.request.Request(address, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", str(exc))
        raise QueryError(detail) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ServiceError(
            f"the embedded ClickHouse owner (process {pid}) did not answer at {address}: {exc}. Is it still running?"
        ) from None
    return Result(tuple(body["columns"]), tuple(tuple(row) for row in body["rows"]))


# --- output ---


def render(result: Result, fmt: str) -> str:
    """A readable table, or JSON (a list of objects), or CSV with a header."""
    if fmt == "json":
        return json.dumps([_plain(d) for d in result.dicts()], indent=2, ensure_ascii=False)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow([_cell(v) for v in row])
        return out.getvalue().rstrip("\n")
    return table(result.columns, [[_cell(v) for v in row] for row in result.rows])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "  ".join(columns) + "\n(no rows)"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    numeric = [all(_numeric(r[i]) for r in rows) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            (c.rjust(w) if num else c.ljust(w)) for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line([c.upper() for c in columns]), *(line(r) for r in rows)])


def _numeric(text: str) -> bool:
    return text.replace(".", "", 1).replace("-", "", 1).replace("%", "").isdigit() or text == ""


# --- reports: each reads the live KPI views (refreshed every 5 s from the deduplicated facts) ---


def _major(column: str) -> str:
    """``column`` in minor units -> major units of the row's currency, as ClickHouse SQL."""
    zero = ", ".join(f"'{c}'" for c, e in CURRENCY_EXPONENT.items() if e == 0)
    return f"round({column} / if(currency IN ({zero}), 1, 100), 2)"


REPORTS: dict[str, tuple[str, str]] = {
    "sales": (
        "Orders, units and GMV (cancelled and returned orders excluded) per channel and market",
        f"""
        SELECT channel, market, currency, sum(orders) AS orders, sum(cancelled) AS cancelled, sum(units) AS units,
            {_major("sum(gmv_minor)")} AS gmv,
            round(100 * sum(cod_orders) / greatest(sum(orders), 1), 1) AS cod_pct,
            max(minute) AS last_minute
        FROM kpi_sales_minute GROUP BY channel, market, currency ORDER BY channel, market
        """,
    ),
    "sla": (
        "Ship-by compliance and routing per channel and market",
        """
        SELECT channel, market, s.orders AS orders, s.on_time AS on_time, s.late AS late,
            s.open_overdue AS open_overdue, round(100 * s.compliance, 1) AS compliance_pct,
            r.routed AS routed, r.held AS held, round(100 * r.split_rate, 1) AS split_pct
        FROM kpi_ship_by AS s FULL OUTER JOIN kpi_routing AS r USING (channel, market)
        ORDER BY channel, market
        """,
    ),
    "stock": (
        "Stock per SKU and warehouse from the ledger, least available first",
        "SELECT sku, warehouse, on_hand, reserved, available, updated_at FROM kpi_stock "
        "{where} ORDER BY available, sku, warehouse LIMIT {limit}",
    ),
    "oversell": (
        "Oversell attempts: orders channels took for stock we did not have, per SKU",
        "SELECT sku, attempts, units_short, channels, last_at FROM kpi_oversell {where} "
        "ORDER BY attempts DESC, sku LIMIT {limit}",
    ),
    "channels": (
        "Per channel: orders, fill rate, dead letters, stock pushes",
        """
        SELECT channel, o.orders AS orders, f.holds AS holds, round(100 * f.fill_rate, 1) AS fill_pct,
            f.short AS short, d.letters AS dead_letters, p.pushes AS stock_pushes, p.last_push AS last_push
        FROM (SELECT channel, sum(orders) AS orders FROM kpi_sales_minute GROUP BY channel) AS o
        FULL OUTER JOIN kpi_fill_rate AS f USING (channel)
        FULL OUTER JOIN (SELECT channel, sum(letters) AS letters FROM kpi_dead_letters GROUP BY channel) AS d
            USING (channel)
        FULL OUTER JOIN (SELECT channel, count() AS pushes, max(computed_at) AS last_push
            FROM channel_stock_updates FINAL GROUP BY channel) AS p USING (channel)
        WHERE channel != '' ORDER BY channel
        """,
    ),
}


def report_sql(name: str, sku: str | None = None, limit: int = 50) -> str:
    if name not in REPORTS:
        raise ValueError(f"unknown report {name!r}; choose one of {', '.join(REPORTS)}")
    where = ""
    if sku is not None:
        where = "WHERE sku = " + "'" + sku.replace("\\", "\\\\").replace("'", "\\'") + "'"
    sql = " ".join(REPORTS[name][1].split()).replace("{where}", where).replace("{limit}", str(int(limit)))
    # report columns reuse the view's names (orders, late, ...); missing join sides read as empty, not 0
    return sql + " SETTINGS prefer_column_name_to_alias = 1, join_use_nulls = 1"


def alerts_sql(include_resolved: bool, limit: int) -> str:
    where = "" if include_resolved else "WHERE state != 'resolved'"
    return (
        "SELECT opened_at, state, severity, kind, subject, summary, acked_by, alert_id "
        f"FROM alerts FINAL {where} ORDER BY opened_at DESC, alert_id LIMIT {int(limit)}"
    )
