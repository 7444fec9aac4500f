"""Stock back to channels, the pure parts: rules files and their errors, ats(), the coalescer and pacer,
and `oms stock channels` arguments and connection errors. Through Kafka and Redis:
tests/integration/test_channel_stock.py."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest

from connectors.channel_stock import (
    ChannelAts,
    ChannelRule,
    ChannelStockStats,
    Coalescer,
    Level,
    Lock,
    Rules,
    RulesError,
    ats,
    load_rules,
    parse_rules,
    sample_rules_path,
)
from infra.process import ServiceError
from oms.cli import _channels_table, main
from oms.runtime import free_port, running_sinks
from oms.settings import Settings
from schemas.topics import CHANNELS
from sinks.stock_model import StockRow

NOW = 1_796_000_000_000  # 2026-11-30, UTC epoch ms
GOOD = """\
version = "t-1"

[defaults]
quota = 10
min_interval_s = 0

[channel.shopee]
buffer = 2

[channel.lazada]
share = 0.5
quota = 20
"""


def _rules(*channels: ChannelRule, locks: tuple[Lock, ...] = ()) -> Rules:
    return Rules("t", {c.channel: c for c in channels}, locks)


def _rule(channel: str = "shopee", **fields: object) -> ChannelRule:
    return ChannelRule(channel=channel, quota=float(fields.pop("quota", 10)), **fields)  # type: ignore[arg-type]


def _problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "rules.toml")
    assert str(caught.value).startswith("rules.toml: channel stock rules refused")
    return caught.value.problems


# ---------------------------------------------------------------------------------------------- rules


def test_a_good_file_gives_defaults_overridden_per_channel_and_a_versioned_label() -> None:
    rules = parse_rules(GOOD, "rules.toml")
    assert list(rules.channels) == ["shopee", "lazada"]
    shopee, lazada = rules.channels["shopee"], rules.channels["lazada"]
    assert (shopee.quota, shopee.buffer, shopee.share, shopee.min_interval_s, shopee.burst) == (10, 2, 1, 0, 1)
    assert (lazada.quota, lazada.share, lazada.max, lazada.warehouses) == (20, Fraction(1, 2), None, None)
    assert rules.label.startswith("t-1+") and len(rules.label) == len("t-1+") + 8
    assert parse_rules(GOOD + "\n# a comment\n").label != rules.label, "an edit under the same version is told apart"


def test_the_packaged_sample_syncs_every_channel_with_a_quota_and_holds_a_campaign_lock() -> None:
    rules = load_rules(sample_rules_path())
    assert set(rules.channels) == set(CHANNELS)
    assert {c: r.quota for c, r in rules.channels.items()} == {
        "shopee": 10, "lazada": 20, "tiktok": 50, "tokopedia": 10, "shopify": 2, "grab": 5, "pos": 50
    }  # fmt: skip
    assert all(r.share == 1 for r in rules.channels.values()), "every channel is offered the whole pool by default"
    (lock,) = rules.locks
    assert (lock.channel, lock.units) == ("shopee", 20)
    assert lock.until_ms == int(datetime(2026, 12, 12, 15, 59, 59, tzinfo=UTC).timestamp() * 1000)


def test_broken_toml_is_refused_with_its_line_and_column() -> None:
    (problem,) = _problems('version = "x"\n[channel.shopee]\nquota = \n')
    assert problem.startswith("line 3, column 9: not valid TOML")


def test_every_wrong_field_is_named_with_its_table_and_line() -> None:
    problems = _problems(
        """\
version = "x"

[defaults]
min_interval = 1

[channel.shopee]
quota = 10
share = 1.5
buffer = -1

[channel.lazada]
warehouses = []

[channel.amazon]
quota = 1

[channel.tiktok]
buffer = 1
"""
    )
    assert problems == [
        "line 4: [defaults]: unknown field 'min_interval' (did you mean 'min_interval_s'?)",
        "line 8: [channel.shopee] share: expected a share of the pool between 0 and 1 (1: all of it, 0.5: half), "
        "got 1.5",
        "line 9: [channel.shopee] buffer: expected a whole number of units >= 0, got -1",
        "line 12: [channel.lazada] warehouses: an empty list would offer nothing; leave the field out to use every "
        "warehouse",
        "line 14: [channel.amazon]: unknown channel 'amazon'; channels: " + ", ".join(CHANNELS),
        "line 17: [channel.tiktok] quota: missing: requests per second the channel's API allows per shop, "
        "e.g. quota = 10 (or set it under [defaults])",
    ]


def test_missing_version_no_channel_and_an_unknown_top_level_field_are_refused() -> None:
    assert _problems("buffers = 1\n") == [
        "line 1: buffers: unknown field 'buffers'; known: version, defaults, channel, lock",
        'version: expected a name for this version of the rules, e.g. "2026-11-01.1", got None',
        "[channel.<name>]: no channel to sync: add a table per channel, e.g. [channel.shopee] quota = 10",
    ]


def test_lock_errors_name_the_lock_and_its_field() -> None:
    problems = _problems(
        GOOD
        + """
[[lock]]
channel = "shopee"
sku = "FS-01"
units = 20
until = 2026-12-12T23:59:59+08:00

[[lock]]
channel = "tiktok"
sku = "FS-01"
units = 1.5
until = 2026-12-12T23:59:59

[[lock]]
sku = "FS-02"
units = 3
until = "next week"
"""
    )
    assert problems == [
        "line 21: [[lock]] #2 channel: 'tiktok' has no [channel.tiktok] table; locks are for synced channels",
        "line 23: [[lock]] #2 units: expected a whole number of units >= 0, got 1.5",
        "line 24: [[lock]] #2 until: expected a time with its UTC offset, e.g. 2026-12-12T23:59:59+08:00, "
        "got 2026-12-12T23:59:59",
        "line 26: [[lock]] #3 channel: missing",  # the lock's own line: the field is not there
        "line 29: [[lock]] #3 until: expected a time with its UTC offset, e.g. 2026-12-12T23:59:59+08:00, "
        "got 'next week'",
    ]


def test_a_lock_until_may_be_a_toml_time_or_an_iso_string_with_offset() -> None:
    text = GOOD + '[[lock]]\nchannel = "lazada"\nsku = "A"\nunits = 3\nuntil = "2026-12-12T00:00:00+07:00"\n'
    (lock,) = parse_rules(text).locks
    assert lock == Lock("lazada", "A", 3, int(datetime(2026, 12, 11, 17, tzinfo=UTC).timestamp() * 1000))


def test_load_rules_names_the_file_it_could_not_read(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"(?s)nope\.toml: channel stock rules refused.*cannot read the file"):
        load_rules(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("share = 0.5", "share = 2"))
    with pytest.raises(RulesError, match=rf"(?s){bad}: .*line 11: \[channel.lazada\] share"):
        load_rules(bad)


def test_oms_sink_refuses_a_bad_rules_file_before_starting_any_sink(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("quota = 20", "quota = 0"))
    settings = Settings(channel_stock_rules=str(bad))
    refused = pytest.raises(ServiceError, match=r"(?s)line 12: \[channel.lazada\] quota.*OMS_CHANNEL_STOCK_RULES")
    with refused, running_sinks(settings, client=object()):  # type: ignore[arg-type]
        pass


def test_the_setting_must_name_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rules file at"):
        Settings(channel_stock_rules=str(tmp_path / "missing.toml"))
    (tmp_path / "r.toml").write_text(GOOD)
    assert Path(Settings(channel_stock_rules=str(tmp_path / "r.toml")).channel_stock_rules).is_absolute()


# ------------------------------------------------------------------------------------------------ ats


ROWS = {"WH-JKT-1": Level(100, 30), "WH-SBY-2": Level(10, 0), "WH-MNL-1": Level(5, 9)}  # 70 + 10 + 0 (short)


def test_ats_is_the_sum_of_available_per_warehouse_and_a_short_warehouse_counts_as_zero() -> None:
    assert ats(ROWS, _rules(_rule()), "shopee", "A", NOW) == 80
    assert ats({}, _rules(_rule()), "shopee", "A", NOW) == 0


def test_buffer_is_held_back_and_ats_never_goes_below_zero() -> None:
    assert ats(ROWS, _rules(_rule(buffer=5)), "shopee", "A", NOW) == 75
    assert ats(ROWS, _rules(_rule(buffer=80)), "shopee", "A", NOW) == 0
    assert ats(ROWS, _rules(_rule(buffer=500)), "shopee", "A", NOW) == 0


def test_share_rounds_down_exactly_and_max_caps() -> None:
    assert ats(ROWS, _rules(_rule(share=Fraction(1, 2))), "shopee", "A", NOW) == 40
    assert ats({"W": Level(7, 0)}, _rules(_rule(share=Fraction(1, 2))), "shopee", "A", NOW) == 3
    share = parse_rules(GOOD.replace("share = 0.5", "share = 0.29")).channels["lazada"].share
    assert ats({"W": Level(100, 0)}, _rules(_rule("lazada", share=share)), "lazada", "A", NOW) == 29
    assert ats(ROWS, _rules(_rule(buffer=10, share=Fraction(1, 2))), "shopee", "A", NOW) == 35, "buffer, then share"
    assert ats(ROWS, _rules(_rule(max=25)), "shopee", "A", NOW) == 25
    assert ats({"W": Level(3, 0)}, _rules(_rule(max=25)), "shopee", "A", NOW) == 3
    assert ats(ROWS, _rules(_rule(share=Fraction(0))), "shopee", "A", NOW) == 0


def test_only_the_channels_warehouses_count() -> None:
    rules = _rules(_rule("pos", warehouses=frozenset({"WH-SBY-2", "WH-GONE"})), _rule("shopee"))
    assert ats(ROWS, rules, "pos", "A", NOW) == 10
    assert ats(ROWS, rules, "shopee", "A", NOW) == 80


def test_a_campaign_lock_is_offered_on_its_channel_only_and_taken_from_the_others() -> None:
    locks = (
        Lock("shopee", "FS-01", 20, NOW + 1),
        Lock("lazada", "FS-01", 5, NOW + 1),
        Lock("shopee", "B", 50, NOW + 1),
    )
    rules = _rules(_rule("shopee"), _rule("lazada"), _rule("tiktok", buffer=2), locks=locks)
    assert ats(ROWS, rules, "shopee", "FS-01", NOW) == 75, "its own 20 stay in; lazada's 5 are not shopee's"
    assert ats(ROWS, rules, "lazada", "FS-01", NOW) == 60
    assert ats(ROWS, rules, "tiktok", "FS-01", NOW) == 80 - 25 - 2
    assert ats(ROWS, rules, "tiktok", "OTHER", NOW) == 78, "a lock holds its SKU only"
    assert ats({"W": Level(10, 0)}, rules, "tiktok", "B", NOW) == 0, "more locked than there is: nothing, not < 0"


def test_an_expired_lock_holds_nothing() -> None:
    rules = _rules(_rule("shopee"), _rule("lazada"), locks=(Lock("shopee", "FS-01", 20, NOW),))
    assert ats(ROWS, rules, "lazada", "FS-01", NOW - 1) == 60
    assert ats(ROWS, rules, "lazada", "FS-01", NOW) == 80, "until is exclusive"
    assert rules.expiring(NOW - 1000, NOW) == {"FS-01"} and rules.expiring(NOW, NOW + 1000) == set()


def test_ats_takes_the_stock_read_models_rows_and_refuses_an_unknown_channel() -> None:
    rows = {"WH-1": StockRow("A", "WH-1", 12, 2), "WH-2": StockRow("A", "WH-2", 1, 3)}
    assert ats(rows, _rules(_rule()), "shopee", "A", NOW) == 10
    with pytest.raises(KeyError, match="channel 'grab' has no rule"):
        ats(rows, _rules(_rule()), "grab", "A", NOW)


# ------------------------------------------------------------------------------ coalescer and pacer


def _coalescer(*rules: ChannelRule) -> Coalescer[int]:
    return Coalescer({r.channel: r for r in rules or (_rule(quota=10),)})


def test_a_thousand_changes_of_one_sku_in_a_second_make_at_most_quota_pushes_and_the_last_goes_out() -> None:
    for quota in (1, 10, 50):
        c = _coalescer(_rule(quota=quota))
        pushed = []
        for i in range(1000):
            now = i / 1000
            c.offer("shopee", "FS-01", 1000 - i, mark=i)
            pushed += c.due(now)
        assert 1 <= len(pushed) <= quota, f"quota {quota}: {len(pushed)} pushes in one second"
        assert pushed[0].available == 1000
        later = c.due(1.0) + c.due(5.0)
        assert [u.available for u in later] == [1], "the last value always goes out"
        assert c.due(60.0) == [] and c.pending == 0


def test_pushes_never_exceed_burst_plus_quota_times_the_window_and_every_last_value_goes_out() -> None:
    rng = random.Random(7)
    c = _coalescer(_rule("shopee", quota=10, burst=3), _rule("tiktok", quota=50, min_interval_s=0.5))
    truth: dict[tuple[str, str], int] = {}
    times: dict[str, list[float]] = {"shopee": [], "tiktok": []}
    now = 0.0
    for i in range(20_000):
        now += rng.random() / 500
        channel, sku, value = rng.choice(["shopee", "tiktok"]), f"S{rng.randrange(40)}", rng.randrange(5)
        c.offer(channel, sku, value, mark=i)
        truth[(channel, sku)] = value
        for u in c.due(now):
            times[u.channel].append(now)
    while c.pending:
        now += 0.05
        for u in c.due(now):
            times[u.channel].append(now)
    for channel, quota, burst in (("shopee", 10, 3), ("tiktok", 50, 1)):
        stamps = times[channel]
        for start in range(0, len(stamps), 7):  # every window that starts at a push
            for end in range(start, min(len(stamps), start + 200)):
                assert end - start + 1 <= burst + quota * (stamps[end] - stamps[start]) + 1e-9
    assert {k: c.last(*k) for k in truth} == truth, "what was pushed last is the latest value of every key"


def test_an_unchanged_value_is_not_pushed_again() -> None:
    c = _coalescer()
    assert c.offer("shopee", "A", 5, mark=1)
    assert [u.available for u in c.due(0.0)] == [5]
    assert not c.offer("shopee", "A", 5, mark=2), "same as pushed: nothing waits"
    assert c.offer("shopee", "A", 6, mark=3)
    assert not c.offer("shopee", "A", 5, mark=4), "back to what the channel shows before it went out"
    assert c.pending == 0 and c.due(10.0) == []


def test_a_value_the_channel_already_has_from_before_a_restart_is_not_pushed() -> None:
    c = _coalescer()
    c.seed("shopee", "A", 5)
    c.seed("shopee", "B", None)  # nothing stored for B: its first value goes out, whatever it is
    assert not c.offer("shopee", "A", 5, mark=1)
    assert c.offer("shopee", "B", 0, mark=2)
    c.seed("shopee", "A", 9)  # known already: a later seed does not overwrite
    assert c.last("shopee", "A") == 5


def test_min_interval_holds_one_sku_back_but_not_the_others() -> None:
    c = _coalescer(_rule(quota=100, burst=100, min_interval_s=1.0))
    c.offer("shopee", "A", 1, mark=1)
    assert [u.sku for u in c.due(0.0)] == ["A"]
    c.offer("shopee", "A", 2, mark=2)
    c.offer("shopee", "B", 1, mark=3)
    assert [u.sku for u in c.due(0.5)] == ["B"], "A was pushed 0.5 s ago"
    assert c.due(0.99) == []
    assert [(u.sku, u.available) for u in c.due(1.0)] == [("A", 2)]


def test_the_oldest_waiting_value_goes_first_and_channels_are_paced_apart() -> None:
    c = _coalescer(_rule("shopee", quota=1), _rule("tiktok", quota=1))
    for sku in ("C", "A", "B"):
        c.offer("shopee", sku, 1, mark=0)
    c.offer("tiktok", "A", 1, mark=0)
    c.offer("shopee", "C", 2, mark=1)  # a newer value keeps C's place in line
    assert [(u.channel, u.sku, u.available) for u in c.due(0.0)] == [("shopee", "C", 2), ("tiktok", "A", 1)]
    assert c.due(0.5) == []
    assert [u.sku for u in c.due(1.0)] == ["A"]
    assert [u.sku for u in c.due(2.0)] == ["B"]


def test_an_update_carries_the_oldest_and_newest_change_it_reflects() -> None:
    c = _coalescer()
    c.offer("shopee", "A", 1, mark=10)
    c.offer("shopee", "A", 2, mark=11)
    c.offer("shopee", "A", 3, mark=12, since=9)  # since only counts when nothing was waiting
    (u,) = c.due(0.0)
    assert (u.available, u.since, u.latest) == (3, 10, 12)
    c.offer("shopee", "A", 4, mark=14, since=13)
    assert [(w.since, w.latest) for w in c.waiting()] == [(13, 14)]


def test_a_failed_write_is_retried_first_and_not_mistaken_for_unchanged() -> None:
    c = _coalescer(_rule(quota=1))
    c.offer("shopee", "A", 5, mark=1)
    c.offer("shopee", "B", 7, mark=2)
    failed = c.due(0.0)
    assert [u.sku for u in failed] == ["A"]
    c.requeue(failed)
    assert c.offer("shopee", "A", 5, mark=3), "the channel may not have 5: it still waits"
    assert [(u.sku, u.available, u.since) for u in c.due(1.0)] == [("A", 5, 1)]
    assert [u.sku for u in c.due(2.0)] == ["B"]


def test_new_quotas_apply_and_a_channel_no_longer_synced_is_forgotten() -> None:
    c = _coalescer(_rule("shopee", quota=1), _rule("lazada", quota=1))
    for sku in "ABCD":
        c.offer("shopee", sku, 1, mark=0)
        c.offer("lazada", sku, 1, mark=0)
    assert len(c.due(0.0)) == 2
    c.set_rules({"shopee": _rule("shopee", quota=100, burst=10)})
    assert [u.channel for u in c.due(0.1)] == ["shopee"] * 3
    assert c.pending == 0
    c.forget(["A"])
    assert not c.knows("shopee", "A") and c.knows("shopee", "B")


def test_latency_quantiles_of_the_stats() -> None:
    stats = ChannelStockStats()
    assert stats.p50_ms is None
    stats.latencies_ms.extend(float(v) for v in range(1, 101))
    assert (stats.p50_ms, stats.p99_ms, stats.latency_ms(1.0)) == (50.0, 99.0, 100.0)


# --------------------------------------------------------------------------------- oms stock channels


def test_the_table_has_a_column_per_channel_and_the_newest_update_per_sku() -> None:
    at = int(datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC).timestamp() * 1000)
    found = [
        ChannelAts("FS-01", "shopee", 1200, at, "v1+abc", 0, 5),
        ChannelAts("FS-01", "lazada", 3, at - 5000, "v1+abc", 0, 5),
        ChannelAts("MUG", "lazada", 0, None, "", None, None),
    ]
    lines = _channels_table(found)
    assert [line.split() for line in lines[:3]] == [
        ["SKU", "SHOPEE", "LAZADA", "UPDATED", "(UTC)"],
        ["FS-01", "1,200", "3", "2026-11-28", "01:02:03"],
        ["MUG", "-", "0", "-"],
    ]
    assert lines[-1].strip() == "2 SKUs on 2 channels; rules v1+abc"


def test_stock_channels_takes_only_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stock", "channels", "--warehouse", "WH-1"]) == 2
    assert "oms stock channels does not take --warehouse (only `oms stock show` does)" in capsys.readouterr().err
    assert main(["stock", "show", "--channel", "shopee"]) == 2
    assert "oms stock show does not take --channel (only `oms stock channels` does)" in capsys.readouterr().err
    assert main(["stock", "load", "x.csv", "--sku", "A"]) == 2
    assert "(only `oms stock show` or `oms stock channels` do)" in capsys.readouterr().err
    assert main(["stock", "channels", "--channel", "amazon"]) == 2
    assert "unknown channel 'amazon'; channels: shopee, lazada" in capsys.readouterr().err


def test_stock_channels_without_redis_says_where_it_looked_and_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("OMS_REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    assert main(["stock", "channels", "--sku", "FS-01"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        f"oms stock channels: cannot read available-to-sell per channel from Redis at redis://:********@127.0.0.1:{port}/0"
        in err
    )
    assert "`oms up`" in err and "OMS_REDIS_URL" in err and "hunter2" not in err
