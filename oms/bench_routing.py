"""``oms bench routing``: routing decisions per second on one core with the sample rules.

Pure: no broker. Requests are drawn from the rules themselves (postcodes inside each market's region
ranges, 1-4 lines, a COD share, lines held in the market's nodes, mostly one node per order) with a
fixed seed, so two runs route the same orders. Measures ``preference`` (at reserve time) and
``route`` (once allocated, with the workload taken as the agent does), per-decision latency
percentiles and the process's peak memory.
"""

from __future__ import annotations

import random
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from oms.bench import _write
from schemas.order import MARKET_CURRENCY, Market
from streams import routing
from streams.routing_rules import Rules, load_rules


@dataclass
class RoutingResult:
    rules: str
    orders: int
    route_per_s: float
    route_us_p50: float
    route_us_p99: float
    preference_per_s: float
    routed: int
    held: int
    split: int
    peak_rss_mb: float


def requests(rules: Rules, count: int, seed: int = 7) -> list[routing.Request]:
    rng = random.Random(seed)
    markets = sorted(rules.markets, key=lambda m: m.value)
    out = []
    for i in range(count):
        market = rng.choice(markets)
        spec = rules.markets[market]
        region = rng.choice(spec.region)
        span = rng.choice(region.ranges)
        digits = len(region.postcodes[0].split("-")[0])
        postcode = str(rng.randint(span.low, span.high)).zfill(digits)
        nodes = [n.id for n in rules.nodes_in(market)]
        home = rng.choice(nodes)
        key = f"bench:shopee:{i}"
        lines = tuple(
            routing.Line(f"{key}|{n}", f"SKU-{rng.randint(1, 500):04d}", rng.randint(1, 3),
                         home if rng.random() < 0.9 else rng.choice(nodes))
            for n in range(rng.randint(1, 4))
        )  # fmt: skip
        cod = rng.random() < 0.3
        total = rng.randint(1, 40) * spec.cod_cap_minor // 100
        out.append(
            routing.Request(key, "bench", "shopee", market, postcode, None, cod, total,
                            _currency(market.value), None, 1, lines)
        )  # fmt: skip
    return out


def _currency(market: str) -> str:
    return MARKET_CURRENCY[Market(market)]


def run_routing(rules_path: Path, orders: int, out_dir: Path) -> RoutingResult:
    rules = load_rules(rules_path)
    batch = requests(rules, orders)
    now = int(time.time() * 1000)
    start = time.perf_counter()
    for request in batch:
        routing.preference(request, rules, now)
    preference_s = time.perf_counter() - start
    workload = routing.Workload()
    took: list[float] = []
    routed = held = split = 0
    start = time.perf_counter()
    for request in batch:
        t0 = time.perf_counter()
        decision = routing.route(request, rules, workload, now, routing.Share(0, 4))
        for shipment in decision.shipments:
            workload.take(shipment)
        took.append(time.perf_counter() - t0)
        routed += decision.outcome == "routed"
        held += decision.outcome == "held"
        split += decision.split
    route_s = time.perf_counter() - start
    cuts = statistics.quantiles(took, n=100)
    result = RoutingResult(
        rules=rules.label,
        orders=orders,
        route_per_s=round(orders / route_s, 1),
        route_us_p50=round(cuts[49] * 1e6, 1),
        route_us_p99=round(cuts[98] * 1e6, 1),
        preference_per_s=round(orders / preference_s, 1),
        routed=routed,
        held=held,
        split=split,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    _write(out_dir, "routing", asdict(result))
    return result
