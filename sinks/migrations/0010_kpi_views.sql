-- Live KPIs as refreshable materialized views: each recomputes from the deduplicated facts (FINAL) every
-- 5 seconds and swaps its table atomically, so a replay of any topic can never double count a KPI, and a
-- read is a scan of a small table. On a big history, lengthen the period with
-- `ALTER TABLE kpi_... MODIFY REFRESH EVERY 1 MINUTE`. Needs ClickHouse 24.10+ (chDB 3+).

-- Orders, units and GMV (non-cancelled, in minor units of the currency) per channel and market per minute.
CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_sales_minute
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY (minute, channel, market)
AS SELECT
    toStartOfMinute(created_at) AS minute, channel, market, currency,
    count() AS orders,
    countIf(status IN ('cancelled', 'returned')) AS cancelled,
    sum(units) AS units,
    sumIf(total_minor, status NOT IN ('cancelled', 'returned')) AS gmv_minor,
    countIf(is_cod) AS cod_orders
FROM orders FINAL
GROUP BY minute, channel, market, currency;

-- Fill rate per channel: of the holds the inventory decided, how many got stock; shorts are oversell attempts.
CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_fill_rate
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY channel
AS SELECT
    channel,
    uniqExactIf(hold_id, state IN ('reserved', 'short')) AS holds,
    uniqExactIf(hold_id, state = 'reserved') AS filled,
    uniqExactIf(hold_id, state = 'short') AS short,
    if(holds = 0, 1.0, filled / holds) AS fill_rate
FROM reservations FINAL
GROUP BY channel;

-- Oversell attempts per SKU: orders a channel took for stock we did not have (the inventory said short).
CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_oversell
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY sku
AS SELECT
    sku,
    uniqExact(hold_id) AS attempts,
    sum(quantity) AS units_short,
    arraySort(groupUniqArray(channel)) AS channels,
    max(at) AS last_at
FROM reservations FINAL
WHERE state = 'short'
GROUP BY sku;

-- Ship-by compliance per channel and market: shipped on time, shipped late, and still open past the deadline.
CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_ship_by
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY (channel, market)
AS SELECT
    o.channel AS channel, o.market AS market,
    count() AS orders,
    countIf(s.shipped_at IS NOT NULL AND s.shipped_at <= o.ship_by) AS on_time,
    countIf(s.shipped_at IS NOT NULL AND s.shipped_at > o.ship_by) AS late,
    countIf(s.shipped_at IS NULL AND o.status IN ('paid', 'processing') AND o.ship_by < now64(3)) AS open_overdue,
    if(on_time + late = 0, 1.0, on_time / (on_time + late)) AS compliance
FROM (SELECT * FROM orders FINAL WHERE ship_by IS NOT NULL) AS o
LEFT JOIN
(
    SELECT order_key, min(event_time) AS shipped_at
    FROM order_status_history FINAL WHERE status = 'shipped' GROUP BY order_key
) AS s ON s.order_key = o.order_key
GROUP BY channel, market
SETTINGS join_use_nulls = 1;

-- Stock per SKU and warehouse: the ledger's newest entry (offsets order a SKU's movements).
CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_stock
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY (sku, warehouse)
AS SELECT
    sku, warehouse,
    argMax(on_hand_after, (src_partition, src_offset)) AS on_hand,
    argMax(reserved_after, (src_partition, src_offset)) AS reserved,
    on_hand - reserved AS available,
    max(at) AS updated_at
FROM inventory_ledger FINAL
GROUP BY sku, warehouse;

-- Split-shipment rate per channel and market, on each order's newest routing decision.
CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_routing
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY (channel, market)
AS SELECT
    channel, market,
    count() AS decided,
    countIf(outcome = 'routed') AS routed,
    countIf(outcome = 'held') AS held,
    countIf(outcome = 'routed' AND shipments > 1) AS split,
    if(routed = 0, 0.0, split / routed) AS split_rate,
    countIf(outcome = 'routed' AND meets_ship_by) AS meets_ship_by
FROM
(
    SELECT order_key, any(channel) AS channel, any(market) AS market,
        argMax(outcome, decided_at) AS outcome, argMax(shipments, decided_at) AS shipments,
        argMax(meets_ship_by, decided_at) AS meets_ship_by
    FROM routing_decisions FINAL GROUP BY order_key
)
GROUP BY channel, market;

-- COD share and failed deliveries (a COD order shipped, then cancelled: the buyer refused or was not there).
CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_cod
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY market
AS SELECT
    market,
    count() AS orders,
    countIf(cod) AS cod_orders,
    if(orders = 0, 0.0, cod_orders / orders) AS cod_share,
    countIf(cod AND has(statuses, 'shipped')) AS cod_shipped,
    countIf(cod AND has(statuses, 'shipped') AND has(statuses, 'cancelled')) AS cod_failed,
    if(cod_shipped = 0, 0.0, cod_failed / cod_shipped) AS failed_delivery_rate
FROM
(
    SELECT order_key, any(market) AS market, max(is_cod) AS cod, groupArray(status) AS statuses
    FROM order_status_history FINAL GROUP BY order_key
)
GROUP BY market;

-- Dead letters per channel, stage and reason per minute.
CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_dead_letters
REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY (minute, channel)
AS SELECT
    toStartOfMinute(failed_at) AS minute, channel, stage, reason_code, count() AS letters
FROM dead_letters FINAL
GROUP BY minute, channel, stage, reason_code
