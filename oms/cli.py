"""``oms``: the command line of the order management system."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from infra.process import ServiceError
from oms.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from connectors.channel_stock import ChannelAts
    from sinks.stock_model import StockRow

T = TypeVar("T")


def _up(settings: Settings, _: argparse.Namespace) -> int:
    from infra import services, topics

    for line in services.up(settings):
        print(line)
    created = topics.ensure_topics(settings)
    print(f"topics     {len(created)} created, registry complete" if created else "topics     registry complete")
    return 0


def _down(settings: Settings, _: argparse.Namespace) -> int:
    from infra import services

    for line in services.down(settings):
        print(line)
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from infra import services

    health = services.status(settings)
    print(f"{'service':<11}{'health':<9}{'version':<10}{'address':<44}detail")
    for h in health:
        print(f"{h.name:<11}{'up' if h.healthy else 'DOWN':<9}{h.version:<10}{h.address:<44}{h.detail}")
    if not args.quiet:
        print("\neffective settings:")
        for key, value in settings.masked().items():
            print(f"  {key:<32}{value}")
    return 0 if all(h.healthy for h in health) else 1


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    from infra import topics as infra_topics
    from schemas.topics import ALL

    if args.action == "create":
        created = infra_topics.ensure_topics(settings)
        print("\n".join(f"created {name}" for name in created) or "all topics exist")
    else:
        for spec in ALL:
            name = spec.full_name(settings.topic_prefix)
            print(f"{name:<28}{spec.cleanup_policy:<9}{spec.value}  [key: {spec.key}]")
    return 0


def _worker(settings: Settings, _: argparse.Namespace) -> int:
    from oms.runtime import run_worker

    run_worker(settings)
    return 0


def _sink(settings: Settings, _: argparse.Namespace) -> int:

    from infra.clickhouse import get_client
    from oms.runtime import running_sinks
    from sinks.clickhouse import migrate

    client = get_client(settings)
    migrate(client)
    with running_sinks(settings, client) as sinks:
        signal.signal(signal.SIGTERM, lambda *_: sinks.stop.set())
        print(f"sinks running into ClickHouse database {settings.clickhouse_database}; Ctrl-C to stop")
        try:
            while not sinks.stop.wait(1.0):
                if sinks.errors:
                    raise sinks.errors[0]
        except KeyboardInterrupt:
            pass
    return 0


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    from infra.clickhouse import chdb_owner, get_client
    from sinks.clickhouse import migrate

    owner = chdb_owner(settings) if settings.clickhouse_embedded else None
    if owner is not None:
        raise ServiceError(
            f"the embedded ClickHouse is open in process {owner}, which applied every migration when it started; "
            "stop it to migrate by hand"
        )
    applied = migrate(get_client(settings))
    where = "embedded ClickHouse" if settings.clickhouse_embedded else settings.clickhouse_url
    print("\n".join(f"applied {name}" for name in applied) or f"{where}: every migration is applied")
    return 0


def _sql(settings: Settings, args: argparse.Namespace) -> int:
    from oms.analytics import QueryError, query, render

    try:
        print(render(query(settings, args.query), args.format))
    except QueryError as exc:
        print(f"oms sql: ClickHouse refused the query: {exc}", file=sys.stderr)
        return 2
    return 0


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from oms.analytics import REPORTS, QueryError, query, render, report_sql

    try:
        result = query(settings, report_sql(args.name, sku=args.sku, limit=args.limit))
    except QueryError as exc:
        print(
            f"oms report {args.name}: {exc}\n  (has `oms migrate` run? `oms sink` applies it at start)", file=sys.stderr
        )
        return 2
    if args.format == "table":
        print(f"{REPORTS[args.name][0]} (live views, refreshed every 5 s)\n")
    print(render(result, args.format))
    return 0


def _alerts(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from oms.alerting import send_ack
    from oms.analytics import QueryError, alerts_sql, query, render

    if args.action == "ack":
        if not args.alert:
            raise ServiceError("ack needs the alert id: `oms alerts ack ID` (ids are in `oms alerts list`)")
        send_ack(settings, args.alert, args.by or getpass.getuser(), args.note or "")
        print(f"ack sent for {args.alert}; the detectors record it within a second (`oms alerts list`)")
        return 0
    try:
        print(render(query(settings, alerts_sql(args.all, args.limit)), args.format))
    except QueryError as exc:
        print(f"oms alerts list: {exc}", file=sys.stderr)
        return 2
    return 0


def _connectors(settings: Settings, _: argparse.Namespace) -> int:
    from connectors.webhooks import serve

    print(f"webhooks on http://{settings.webhook_host}:{settings.webhook_port}/webhooks/{{channel}}")
    serve(settings)
    return 0


def _dlq(settings: Settings, args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from oms.dlq import Selection, read_dead_letters, replay

    selection = Selection(channel=args.channel, reason_code=args.reason, ids=frozenset(args.id or ()))
    if args.action == "replay":
        result = replay(settings, selection, force=args.force, dry_run=args.dry_run)
        verb = "would re-drive" if args.dry_run else "re-drove"
        print(f"{verb} {len(result.replayed)} dead letter(s) to their source topics")
        if result.skipped:
            print(f"skipped {len(result.skipped)} already re-driven (use --force to re-drive again)")
        return 0
    letters = list(read_dead_letters(settings, selection))[-args.limit :]
    if args.format == "json":
        for letter in letters:
            row = letter.to_avro() | {"original": letter.original.decode("utf-8", "replace")}
            row["source_key"] = (letter.source_key or b"").decode("utf-8", "replace")
            row["source_headers"] = {k: v.decode("utf-8", "replace") for k, v in letter.source_headers.items()}
            print(json.dumps(row, ensure_ascii=False))
        return 0
    print(f"{'failed at (UTC)':<20}{'channel':<10}{'reason':<18}{'bytes':>8}  {'dead letter id':<40}detail")
    for letter in letters:
        when = datetime.fromtimestamp(letter.failed_at_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{when:<20}{letter.channel or '-':<10}{letter.reason_code:<18}{len(letter.original):>8}  "
            f"{letter.dead_letter_id:<40}{letter.reason[:100]}"
        )
    print(f"({len(letters)} shown)")
    return 0


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from oms.bench import run_normalize, run_webhooks, summary

    if args.what == "webhooks":
        print(summary(run_webhooks(settings, args.records, args.concurrency, Path(args.out))))
        return 0
    if args.what == "routing":
        from oms.bench_routing import run_routing

        result = run_routing(settings.routing_rules_path(), args.orders, Path(args.out))
        print("\n".join(f"  {k:<22}{v}" for k, v in asdict(result).items()))
        return 0
    if args.what == "reserve":
        from oms.bench_reserve import run_reserve

        try:
            counts = [int(n) for n in args.workers.split(",")]
        except ValueError:
            print(f"oms bench reserve: --workers takes counts like 1,2; got {args.workers!r}", file=sys.stderr)
            return 2
        run_reserve(settings, args.orders, args.skus, counts, args.recovery_skus, Path(args.out), rate=args.rate)
        return 0
    if args.what == "pipeline":
        from oms.bench_pipeline import run_pipeline

        numbers = run_pipeline(
            settings,
            rate=args.rate or 200.0,
            seconds=args.seconds,
            workers=int(args.workers.split(",")[0]),
            chaos=args.chaos,
            units=args.units,
            out_dir=Path(args.out),
            load=args.load,
            shape=args.shape,
        )
        print("\n".join(f"  {k:<40}{v}" for k, v in numbers.items()))
        return 0 if numbers["verdict"] == "PASS" else 1
    if args.what == "peer":
        from loadtest.peer import run_peer

        print(f"peer bench: {args.orders} orders, 100 SKUs x {args.units} units, textbook faust app, one worker")
        print(run_peer(settings, args.orders, units=args.units, out_dir=Path(args.out)).render())
        return 0
    if args.what == "sink":
        from oms.bench_sink import run_sink_bench

        run_sink_bench(settings, args.records, Path(args.out))
        return 0
    print(summary(run_normalize(settings, args.records, args.malformed, Path(args.out), rate=args.rate)))
    return 0


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    import math
    from datetime import datetime

    from connectors.raw_producer import ProduceError
    from connectors.simulator import (
        RunSummary,
        Simulator,
        SimulatorError,
        WebhookSecrets,
        run_to_kafka,
        run_to_webhooks,
    )

    def names(text: str | None) -> list[str] | None:
        return None if text is None else [n.strip() for n in text.split(",")]

    try:
        if not math.isfinite(args.rate) or args.rate < 0:
            raise SimulatorError(f"--rate must be events per second >= 0 (0: as fast as possible), got {args.rate}")
        if args.count < 1:
            raise SimulatorError(f"--count must be at least 1, got {args.count}")
        try:
            start = datetime.fromisoformat(args.start) if args.start else None
        except ValueError as exc:
            raise SimulatorError(f"--start {args.start!r} is not an ISO-8601 time (2026-11-11T00:00:00+08:00)") from exc
        markets = names(args.markets)
        simulator = Simulator(
            args.seed,
            names(args.channels),
            [m.upper() for m in markets] if markets else markets,
            skus=args.skus,
            hot_share=args.hot_share,
            duplicate_rate=args.duplicates,
            cancel_rate=args.cancel,
            late_update_rate=args.late,
            malformed_rate=args.malformed,
            start=start,
        )
        if args.dry_run:
            summary = RunSummary(target="nowhere (dry run: nothing produced)", rate=args.rate)
            for i, event in enumerate(simulator.events(args.count)):
                summary.add(event)
                if i < args.show:
                    print(f"--- {event.kind} {event.channel} {event.market} shop={event.shop} id={event.delivery_id}")
                    print(event.body.decode("utf-8", "replace"))
            print(summary.render())
            return 0
        if args.to == "kafka":
            summary = run_to_kafka(settings, simulator, args.count, args.rate)
        else:
            url = args.url or f"http://{settings.webhook_host}:{settings.webhook_port}"
            secrets = WebhookSecrets.from_settings(settings)
            summary = run_to_webhooks(settings, simulator, args.count, args.rate, url, secrets)
    except SimulatorError as exc:
        print(f"oms simulate: {exc}", file=sys.stderr)
        return 2
    except ProduceError as exc:
        print(f"oms simulate: {exc}", file=sys.stderr)
        return 1
    print(summary.render())
    return 1 if summary.errors else 0


def _stock(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    options = {
        "load": {"FILE": args.file, "--version": args.version, "--dry-run": args.dry_run or None},
        "show": {"--sku": args.sku, "--warehouse": args.warehouse, "--format": args.format},
        "channels": {"--sku": args.sku, "--channel": args.channel, "--format": args.format},
    }
    given = list(dict.fromkeys(name for opts in options.values() for name, value in opts.items() if value is not None))
    wrong = [name for name in given if name not in options[args.action]]
    if wrong:
        takers = [f"`oms stock {a}`" for a, opts in options.items() if a != args.action and set(wrong) & set(opts)]
        print(
            f"oms stock {args.action} does not take {', '.join(wrong)} "
            f"(only {' or '.join(takers)} {'does' if len(takers) == 1 else 'do'})",
            file=sys.stderr,
        )
        return 2
    if args.action == "show":
        return _stock_show(settings, args)
    if args.action == "channels":
        return _stock_channels(settings, args)
    if args.file is None:
        print(
            "oms stock load: which file? Give the stock count CSV (header sku,warehouse,on_hand[,version]), "
            "e.g. `oms stock load counts.csv`",
            file=sys.stderr,
        )
        return 2
    from connectors.stock_load import StockFileError, load

    try:
        summary = load(settings, Path(args.file), version=args.version, dry_run=args.dry_run)
    except StockFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    verb = "checked" if args.dry_run else "loaded"
    print(
        f"{verb} {summary.rows} counts: {summary.skus} SKUs in {summary.warehouses} warehouses, "
        f"{summary.units} units on hand"
    )
    return 0


def _from_redis(settings: Settings, what: str, read: Callable[[Any], T]) -> T | None:
    """``read(client)`` against the configured Redis; None (after a message saying what to do) if unreachable."""
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        return read(client)
    except (redis.RedisError, OSError) as exc:
        print(
            f"{what} from Redis at {settings.masked()['OMS_REDIS_URL']}: {exc}\n"
            "  Start the local services with `oms up` (`oms status` shows what is running), "
            "or point OMS_REDIS_URL at your Redis.",
            file=sys.stderr,
        )
        return None
    finally:
        client.close()


def _stock_show(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from schemas.topics import INVENTORY
    from sinks.stock_model import StockModel

    where = settings.masked()["OMS_REDIS_URL"]
    rows = _from_redis(
        settings,
        "oms stock show: cannot read the stock read model",
        lambda client: StockModel(client, prefix=settings.topic_prefix).rows(sku=args.sku, warehouse=args.warehouse),
    )
    if rows is None:
        return 1
    if args.format == "json":
        print(json.dumps([row.as_dict() for row in rows], indent=2, ensure_ascii=False))
    elif rows:
        print("\n".join(_stock_table(rows)))
    if not rows:
        scope = " and ".join(
            f"{what} {value!r}" for what, value in (("SKU", args.sku), ("warehouse", args.warehouse)) if value
        )
        print(
            f"no stock{' for ' + scope if scope else ''} in the read model at {where} "
            f"(keys {settings.topic_prefix}oms:stock:*).\n"
            f"  `oms sink` (which `oms demo` runs too) fills it from the ledger topic "
            f"{INVENTORY.full_name(settings.topic_prefix)}, which `oms worker` writes as stock moves.",
            file=sys.stderr,
        )
    return 0


def _stock_channels(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from connectors.channel_stock import read_ats, rules_path
    from schemas.topics import CHANNELS, INVENTORY

    if args.channel is not None and args.channel not in CHANNELS:
        print(f"oms stock channels: unknown channel {args.channel!r}; channels: {', '.join(CHANNELS)}", file=sys.stderr)
        return 2
    where = settings.masked()["OMS_REDIS_URL"]
    found = _from_redis(
        settings,
        "oms stock channels: cannot read available-to-sell per channel",
        lambda client: read_ats(client, prefix=settings.topic_prefix, sku=args.sku, channel=args.channel),
    )
    if found is None:
        return 1
    if args.format == "json":
        print(json.dumps([a.as_dict() for a in found], indent=2, ensure_ascii=False))
    elif found:
        print("\n".join(_channels_table(found)))
    if not found:
        scope = " and ".join(
            f"{what} {value!r}" for what, value in (("SKU", args.sku), ("channel", args.channel)) if value
        )
        print(
            f"no available-to-sell{' for ' + scope if scope else ''} in the read model at {where} "
            f"(keys {settings.topic_prefix}oms:ats:*).\n"
            f"  `oms sink` (which `oms demo` runs too) computes it from the ledger topic "
            f"{INVENTORY.full_name(settings.topic_prefix)} with the rules in {rules_path(settings)}.",
            file=sys.stderr,
        )
    return 0


def _channels_table(found: Sequence[ChannelAts]) -> list[str]:
    """One row per SKU, one column per channel that has a value; when the newest of them was computed."""
    from datetime import UTC, datetime
    from itertools import groupby

    channels = list(dict.fromkeys(a.channel for a in found))
    head = ("SKU", *(c.upper() for c in channels), "UPDATED (UTC)")
    cells = [head]
    for sku, group in groupby(found, key=lambda a: a.sku):
        by_channel = {a.channel: a for a in group}
        newest = max((a.computed_at_ms or 0 for a in by_channel.values()), default=0)
        when = datetime.fromtimestamp(newest / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if newest else "-"
        values = (f"{by_channel[c].available:,}" if c in by_channel else "-" for c in channels)
        cells.append((sku, *values, when))
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    aligns = "<" + ">" * len(channels) + "<"
    out = ["  ".join(f"{v:{a}{n}}" for v, a, n in zip(c, aligns, widths, strict=True)).rstrip() for c in cells]
    skus, versions = len(cells) - 1, sorted({a.rules_version for a in found if a.rules_version})
    out.append(
        f"\n{skus:,} SKU{'' if skus == 1 else 's'} on {len(channels)} channel{'' if len(channels) == 1 else 's'}; "
        f"rules {', '.join(versions) or 'unknown'}"
    )
    return out


def _stock_table(rows: Sequence[StockRow]) -> list[str]:
    """Rows per SKU and warehouse, with a total line under every SKU held in several warehouses."""
    from itertools import groupby

    lines: list[tuple[str, str, int, int, int, str]] = []
    for sku, group in groupby(rows, key=lambda r: r.sku):
        held = list(group)
        lines += [(r.sku, r.warehouse, r.on_hand, r.reserved, r.available, r.cause) for r in held]
        if len(held) > 1:
            totals = [sum(r.on_hand for r in held), sum(r.reserved for r in held), sum(r.available for r in held)]
            lines.append((sku, f"total ({len(held)})", *totals, ""))
    head = ("SKU", "WAREHOUSE", "ON HAND", "RESERVED", "AVAILABLE", "LAST CHANGE")
    cells = [head, *((s, w, f"{o:,}", f"{r:,}", f"{a:,}", c) for s, w, o, r, a, c in lines)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    aligns = "<<>>><"
    out = ["  ".join(f"{v:{a}{n}}" for v, a, n in zip(c, aligns, widths, strict=True)).rstrip() for c in cells]

    def count(n: int, what: str) -> str:
        return f"{n:,} {what}" + ("" if n == 1 else "s")

    skus, warehouses = len({r.sku for r in rows}), len({r.warehouse for r in rows})
    out.append(
        f"\n{count(len(rows), 'row')}: {count(skus, 'SKU')} in {count(warehouses, 'warehouse')}; "
        f"{sum(r.on_hand for r in rows):,} on hand, {sum(r.reserved for r in rows):,} reserved, "
        f"{sum(r.available for r in rows):,} available"
    )
    return out


def _holds(settings: Settings, args: argparse.Namespace) -> int:
    import getpass
    import json
    from datetime import UTC, datetime

    from oms import routing_ops

    if args.action == "list":
        found = routing_ops.held(settings)
        if args.format == "json":
            for record in found:
                print(json.dumps({k: v for k, v in record.items() if k != "request"}, ensure_ascii=False))
            return 0
        print(f"{'held since (UTC)':<18}{'market':<7}{'channel':<10}{'order':<44}why")
        for record in found:
            when = datetime.fromtimestamp(record["decided_ms"] / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
            why = "; ".join(f"{h['code']}: {h['detail']}" for h in record["holds"])
            print(f"{when:<18}{record['market']:<7}{record['channel']:<10}{record['order_key']:<44}{why}")
        print(f"({len(found)} held; `oms holds release ORDER` ships it, `oms holds cancel ORDER` releases its stock)")
        return 0
    if not args.order:
        print(f"oms holds {args.action}: give the order key, e.g. default:shopee:2611270001; see `oms holds list`")
        return 2
    actor = args.by or getpass.getuser()
    answer = routing_ops.act(settings, args.order, args.action, actor, args.note or "", wait_s=args.wait)
    if answer["outcome"] == "held":
        print(
            f"{args.order}: still held after the release by {actor}: {answer['summary']}\n"
            "A release waives risk holds (COD review, blacklist, split) only; these need the order itself to "
            "change (the address at the channel) or `oms holds cancel`."
        )
        return 1
    print(f"{args.order}: {answer['outcome']} by {actor}: {answer['summary']}")
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    import json
    import time

    from oms import routing_ops
    from streams.routing_rules import RulesError, load_rules

    try:
        rules = load_rules(args.rules)
        start, end = _when(args.start, 0), _when(args.end, int(time.time() * 1000) + 1)
    except (RulesError, ValueError) as exc:
        print(f"oms replay: {exc}", file=sys.stderr)
        return 2
    result = routing_ops.replay(list(routing_ops.decisions(settings)), rules, start, end)
    if args.format == "json":
        print(json.dumps({"rules": result.rules_after, "rows": result.rows(), "changed_node": result.changed_node,
                          "changed_carrier": result.changed_carrier}))  # fmt: skip
    else:
        print("\n".join(routing_ops.comparison_table(result)))
    return 0


def _when(text: str | None, default: int) -> int:
    """ISO-8601 (no offset: UTC) or epoch milliseconds, as epoch ms; None: ``default``."""
    from datetime import UTC, datetime

    if text is None:
        return default
    if text.isdigit():
        return int(text)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO-8601 like 2026-11-11T00:00+08:00, or epoch ms") from None
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000)


def _routing(settings: Settings, args: argparse.Namespace) -> int:
    from streams.routing_rules import RulesError, load_rules

    path = args.file or str(settings.routing_rules_path())
    try:
        rules = load_rules(path)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{path}: valid, version {rules.label}")
    for market, spec in sorted(rules.markets.items()):
        nodes = ", ".join(n.id for n in rules.nodes_in(market))
        carriers = ", ".join(c.name for c in rules.carriers_in(market))
        print(f"  {market.value}: {len(spec.region)} regions; nodes {nodes}; carriers {carriers}; split {spec.split}")
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from oms.demo import run_demo

    return run_demo(settings, timeout=args.timeout, events=args.events)


def _normalize(settings: Settings, args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from streams.adapters.base import RawInput
    from streams.normalize import normalize

    path = Path(args.file)
    try:
        body = path.read_bytes()
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    now = int(time.time() * 1000)
    raw = RawInput(channel=args.channel, value=body, topic=f"file:{path}", partition=0, offset=0, ingest_ms=now)
    outcome = normalize(raw, settings.tenant)
    if outcome.dead_letter is not None:
        letter = outcome.dead_letter
        print(f"{path}: {letter.reason_code}: {letter.reason}", file=sys.stderr)
        return 1
    for event in outcome.events:
        # status updates carry the push's bytes; show them as text, the rest as the Avro record
        print(json.dumps(event.model_dump(mode="json"), indent=2, ensure_ascii=False, default=str))
    return 0


Command = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oms",
        description="Order management for multi-channel sellers: Kafka in, no oversell, ClickHouse out.",
        epilog="Settings come from OMS_* environment variables; `oms status` prints them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    add("up", _up, "Install on first use and start Kafka and Redis on 127.0.0.1; create the topics.")
    add("down", _down, "Stop exactly the services `oms up` started (by PID).")
    add("status", _status, "Health, address and version of each service; effective settings.").add_argument(
        "-q", "--quiet", action="store_true", help="only the service table"
    )
    add("topics", _topics, "List or create the topics of the registry.").add_argument(
        "action", choices=["list", "create"], nargs="?", default="list"
    )
    add("worker", _worker, "Run a stream worker (faust) in the foreground.")
    add("sink", _sink, "Run the ClickHouse and Redis sinks in the foreground (owns the embedded ClickHouse).")
    add("migrate", _migrate, "Apply the ClickHouse schema migrations not yet applied (idempotent).")
    sq = add("sql", _sql, "Run a read-only SQL query on the analytics store (also while the pipeline runs).")
    sq.add_argument("query", help='e.g. "SELECT channel, count() FROM orders FINAL GROUP BY channel"')
    sq.add_argument("--format", choices=["table", "json", "csv"], default="table")
    rep = add("report", _report, "Live reports from the KPI views: sales, sla, stock, oversell, channels.")
    rep.add_argument("name", choices=["sales", "sla", "stock", "oversell", "channels"])
    rep.add_argument("--sku", help="stock, oversell: only this SKU")
    rep.add_argument("--limit", type=int, default=50, help="stock, oversell: at most N rows (default 50)")
    rep.add_argument("--format", choices=["table", "json", "csv"], default="table")
    al = add("alerts", _alerts, "Alerts: list the open ones (--all: also resolved), or acknowledge one.")
    al.add_argument("action", choices=["list", "ack"])
    al.add_argument("alert", nargs="?", help="ack: the alert id from `oms alerts list`")
    al.add_argument("--all", action="store_true", help="list: resolved alerts too")
    al.add_argument("--limit", type=int, default=50, help="list: the newest N (default 50)")
    al.add_argument("--by", help="ack: who is on it (default: your login)")
    al.add_argument("--note", help="ack: a note kept with the ack")
    al.add_argument("--format", choices=["table", "json", "csv"], default="table")
    conn = add("connectors", _connectors, "Channel connectors.")
    conn.add_argument("action", choices=["serve"], help="serve: the webhook service, POST /webhooks/{channel}")
    dlq = add("dlq", _dlq, "Dead letters: list them, or re-drive them through normalization after a fix.")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("--channel", help="only this channel")
    dlq.add_argument("--reason", help="only this reason code, e.g. unknown_status")
    dlq.add_argument("--id", action="append", help="only this dead letter id (topic:partition:offset); repeatable")
    dlq.add_argument("--limit", type=int, default=50, help="list: the newest N (default 50)")
    dlq.add_argument("--format", choices=["table", "json"], default="table", help="list: output format")
    dlq.add_argument("--dry-run", action="store_true", help="replay: show what would be re-driven")
    dlq.add_argument("--force", action="store_true", help="replay: re-drive even if re-driven before")
    bench = add("bench", _bench, "Benchmarks that print numbers and write them to a results folder.")
    bench.add_argument(
        "what",
        choices=["normalize", "webhooks", "reserve", "routing", "sink", "pipeline", "peer"],
        help="normalize: raw records -> canonical changes through Kafka; webhooks: signed requests/s; "
        "reserve: canonical orders -> stock reserved and orders allocated, 1 and 2 workers, and table "
        "recovery after kill -9; routing: decisions/s on one core with the routing rules (no broker); "
        "sink: fact records/s into a private chDB (configured vs small batches), alert latency, detector facts/s; "
        "pipeline: the flash-sale scenario end to end (workers, sinks, verifier, latencies, I/O ceiling); "
        "peer: --orders through a textbook faust app (agent per step, Table per event) on the same broker",
    )
    bench.add_argument("--seconds", type=float, default=60.0, help="pipeline: seconds of load (default 60)")
    bench.add_argument("--units", type=int, default=1000, help="pipeline, peer: units in stock per SKU (default 1000)")
    bench.add_argument("--chaos", action="store_true", help="pipeline: kill -9 a worker at 40%% of the load")
    bench.add_argument(
        "--load",
        choices=["locust", "simulator", "queued"],
        default="locust",
        help="pipeline: who sends the deliveries: locust's KafkaOrderUser, headless (default), the paced simulator, "
        "or queued: rate x seconds deliveries on Kafka before the workers start (how the peer is measured)",
    )
    bench.add_argument(
        "--shape",
        choices=["none", "ramp", "spike", "plateau"],
        default="none",
        help="pipeline with locust: the load shape; --rate is then its peak (spike: the 11.11 midnight tenfold)",
    )
    bench.add_argument("--concurrency", type=int, default=32, help="webhooks: concurrent clients (default 32)")
    bench.add_argument("--records", type=int, default=20_000, help="records or requests (default 20000)")
    bench.add_argument("--malformed", type=float, default=0.02, help="share of malformed bodies (default 0.02)")
    bench.add_argument("--rate", type=float, default=0.0, help="records/s to pace at (default: as fast as possible)")
    bench.add_argument("--out", default="results", help="results folder (default results/)")
    bench.add_argument("--orders", type=int, default=20_000, help="reserve, peer: orders (default 20000)")
    bench.add_argument("--skus", type=int, default=2_000, help="reserve: SKUs the orders buy (default 2000)")
    bench.add_argument("--workers", default="1,2", help="reserve: worker counts to run, comma-separated (default 1,2)")
    bench.add_argument(
        "--recovery-skus", type=int, default=100_000, help="reserve: SKUs in the kill -9 recovery run (0: skip)"
    )
    sim = add(
        "simulate",
        _simulate,
        "Realistic raw orders and status changes for every channel and market, reproducible by seed, "
        "to Kafka or to the webhook service.",
    )
    sim.add_argument("--count", type=int, default=1000, help="events to send (default 1000)")
    sim.add_argument("--rate", type=float, default=100.0, help="events/s (default 100; 0: as fast as possible)")
    sim.add_argument("--seed", type=int, default=1, help="same seed, same bytes (default 1)")
    sim.add_argument("--channels", help="comma-separated, e.g. shopee,lazada (default all)")
    sim.add_argument("--markets", help="comma-separated, e.g. SG,ID (default all)")
    sim.add_argument("--to", choices=["kafka", "webhooks"], default="kafka", help="where to send (default kafka)")
    sim.add_argument("--url", help="webhooks: the service (default http://OMS_WEBHOOK_HOST:OMS_WEBHOOK_PORT)")
    sim.add_argument("--duplicates", type=float, default=0.02, help="share of repeated deliveries (default 0.02)")
    sim.add_argument("--cancel", type=float, default=0.1, help="share of orders cancelled (default 0.1)")
    sim.add_argument("--late", type=float, default=0.05, help="share of orders whose update overtakes them (0.05)")
    sim.add_argument("--malformed", type=float, default=0.0, help="share of broken bodies (default 0)")
    sim.add_argument("--hot-share", type=float, default=0.7, help="share of demand on the flash-sale SKUs (0.7)")
    sim.add_argument("--skus", type=int, default=200, help="catalog size (default 200)")
    sim.add_argument("--start", help="body times start here, ISO-8601 with offset (default 2026-11-11T00:00+08:00)")
    sim.add_argument("--dry-run", action="store_true", help="print a few bodies and the counts; produce nothing")
    sim.add_argument("--show", type=int, default=3, help="dry run: bodies to print (default 3)")
    stock = add(
        "stock",
        _stock,
        "Stock: load a count CSV of sku,warehouse,on_hand[,version] as versioned snapshots, show stock per "
        "SKU and warehouse from the Redis read model, or show what each channel is offered (available-to-sell).",
    )
    stock.add_argument(
        "action",
        choices=["load", "show", "channels"],
        help="load FILE.csv, show the current stock, or channels: available-to-sell per channel",
    )
    stock.add_argument("file", nargs="?", help="load: UTF-8 CSV with header sku,warehouse,on_hand[,version]")
    stock.add_argument("--version", type=int, help="load: version for rows without one (default: file mtime ms)")
    stock.add_argument("--dry-run", action="store_true", help="load: check the file, produce nothing")
    stock.add_argument("--sku", help="show, channels: only this SKU")
    stock.add_argument("--warehouse", help="show: only this warehouse")
    stock.add_argument("--channel", help="channels: only this channel (shopee, lazada, tiktok, ...)")
    stock.add_argument("--format", choices=["table", "json"], help="show, channels: output format (default table)")
    holds = add("holds", _holds, "Orders routing held for an operator: list them, release one to ship, or cancel one.")
    holds.add_argument("action", choices=["list", "release", "cancel"])
    holds.add_argument("order", nargs="?", help="release, cancel: the order key (tenant:channel:channel_order_id)")
    holds.add_argument("--by", help="release, cancel: who decides (default: your login)")
    holds.add_argument("--note", help="release, cancel: why, kept with the decision")
    holds.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the worker's answer (30)")
    holds.add_argument("--format", choices=["table", "json"], default="table", help="list: output format")
    rp = add("replay", _replay, "What-if: route past orders again under other rules and compare with what happened.")
    rp.add_argument("--rules", required=True, help="the rules file to try (TOML, like connectors/samples/routing.toml)")
    rp.add_argument("--from", dest="start", help="orders first decided at or after (ISO-8601 or epoch ms)")
    rp.add_argument("--to", dest="end", help="... and before this time (default: now)")
    rp.add_argument("--format", choices=["table", "json"], default="table")
    add("routing", _routing, "Check a routing rules file (default: the rules in force) and summarise it.").add_argument(
        "file", nargs="?", help="a rules TOML file (default OMS_ROUTING_RULES or the sample)"
    )
    demo = add("demo", _demo, "Start everything and push demo orders end to end; print what happened.")
    demo.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the pipeline (default 180)")
    demo.add_argument("--events", type=int, default=600, help="simulated deliveries in the flash sale (0: none)")
    p = add("normalize", _normalize, "Normalize one raw payload file offline and print the canonical order.")
    p.add_argument("--channel", required=True, help="shopee, lazada, tiktok, ...")
    p.add_argument("file", help="the payload exactly as the channel sent it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command not in {"worker"}:
        level = "DEBUG" if settings.log_level == "debug" else "WARNING"
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.command in {"bench", "demo", "simulate"}:
        # they start child processes; SIGTERM must unwind through their finally blocks to stop them
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result: int = args.func(settings, args)
        return result
    except ServiceError as exc:
        print(f"oms {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
