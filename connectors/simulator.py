"""``oms simulate``: realistic raw marketplace traffic for every channel and market, reproducible by seed.

:class:`Simulator` is a pure generator: from a seed it yields :class:`SimEvent`s, each one raw body exactly as
its channel would deliver it, in a realistic order. Every new order comes first as the channel's order body;
its status changes follow some events later (paid -> shipped -> delivered, a share cancelled before shipping):
as pushes where the platform pushes (Shopee code 3, Lazada one push per unit, TikTok Shop webhooks, Grab order
states) and as the whole order again where the platform re-sends it (Shopify ``orders/updated``, Tokopedia
legacy order bodies, our ``oms.pos.v1``). A share of orders has its first status change delivered before the
order itself (``late``), a share of deliveries is repeated byte for byte with the same delivery id
(``duplicate``), and an optional share is broken (``malformed``).

Bodies are built on the recorded samples in connectors/samples, with new ids, SKUs, quantities and prices as
each platform writes money (Shopee floats, Lazada strings or floats, TikTok strings, Tokopedia whole rupiah,
Shopify decimal strings, Grab integers at ``currency.exponent``, POS decimal strings), the market's currency,
real-looking postcodes, ship-by deadlines and the market's COD share. Demand is skewed to a few hot SKUs sold
in a flash sale. Same seed, same bytes: everything comes from one ``random.Random(seed)``, and body times from
``start``, never from the clock.

Assumptions (not measured; change them with the parameters):

- COD share of orders per market (:data:`DEFAULT_COD_SHARE`): ID 0.55, VN 0.6, PH 0.5, TH 0.4, MY 0.25,
  SG 0.05, from public estimates of cash-on-delivery use in SEA e-commerce.
- Postcodes: real formats and ranges per market (:data:`_PLACES`): SG 6 digits by postal sector, MY and ID
  and TH 5 digits by state/city range (TH Bangkok 10100-10600 in tens), VN the 6-digit codes of 2018
  (Hanoi 10xxxx-15xxxx, HCMC 70xxxx-76xxxx), PH 4 digits (Makati 1200-1235, Quezon City 1100-1138).
- Demand: a line picks one of the hot SKUs (the first 5 % of the catalog) with probability ``hot_share``
  (0.7), at a flash-sale price with one or two units; otherwise a Zipf-like pick among the rest.
- Channel mix (:data:`CHANNEL_WEIGHT`) and market mix (:data:`MARKET_WEIGHT`) roughly follow marketplace GMV.
- 25 % of prepaid marketplace orders arrive unpaid first; Tokopedia notifies only paid orders, Grab submits
  only accepted ones, and POS counter sales arrive completed.
- Grab order-state pushes carry Grab's documented ``merchantID, partnerMerchantID, orderID, state, driverETA,
  code, message`` plus ``updatedAt`` (ISO-8601 UTC), a time some integrations see and the adapter reads.
- Half of the Tokopedia orders arrive TikTok Shop-shaped (orders and webhooks, since the 2025 merger), half
  as legacy Tokopedia bodies re-sent whole on every status change.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import heapq
import hmac
import itertools
import math
import random
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

import orjson
from confluent_kafka import KafkaError, Message

from connectors.raw_producer import RawProducer, sample
from oms.settings import Settings
from schemas.order import CURRENCY_EXPONENT, MARKET_CURRENCY, Market
from schemas.topics import CHANNELS

Kind = Literal["order", "status", "duplicate", "malformed"]
KINDS: tuple[Kind, ...] = ("order", "status", "duplicate", "malformed")

ALL_MARKETS: tuple[Market, ...] = tuple(Market)

#: Which markets each channel serves.
CHANNEL_MARKETS: dict[str, tuple[Market, ...]] = {
    "shopee": ALL_MARKETS,
    "lazada": ALL_MARKETS,
    "tiktok": ALL_MARKETS,
    "tokopedia": (Market.ID,),
    "shopify": ALL_MARKETS,
    "grab": (Market.SG, Market.MY, Market.ID, Market.TH, Market.VN, Market.PH),
    "pos": ALL_MARKETS,
}

#: Assumed share of orders paid cash on delivery, per market.
DEFAULT_COD_SHARE: dict[Market, float] = {
    Market.ID: 0.55,
    Market.VN: 0.6,
    Market.PH: 0.5,
    Market.TH: 0.4,
    Market.MY: 0.25,
    Market.SG: 0.05,
}

#: Assumed relative order volume per channel and per market (an order picks a served pair by their product).
CHANNEL_WEIGHT: dict[str, float] = {
    "shopee": 35,
    "lazada": 18,
    "tiktok": 20,
    "tokopedia": 6,
    "shopify": 8,
    "grab": 8,
    "pos": 5,
}
MARKET_WEIGHT: dict[Market, float] = {
    Market.ID: 30,
    Market.VN: 18,
    Market.TH: 17,
    Market.PH: 15,
    Market.MY: 12,
    Market.SG: 8,
}

#: 11.11, 00:00 in Singapore: the default start of body times, so a seed alone fixes every byte.
DEFAULT_START = datetime(2026, 11, 11, tzinfo=timezone(timedelta(hours=8)))

#: Share of prepaid marketplace orders first delivered unpaid.
UNPAID_FIRST = 0.25
#: Share of the catalog that is hot (the flash-sale SKUs).
HOT_SKUS = 0.05

_SAMPLES = {
    "shopee": "shopee_order_detail.json",
    "lazada": "lazada_order.json",
    "tiktok": "tiktok_order_detail.json",
    "tokopedia": "tokopedia_legacy_order.json",
    "shopify": "shopify_order.json",
    "grab": "grab_order.json",
    "pos": "pos_order.json",
}


class SimulatorError(ValueError):
    """A parameter the simulator cannot work with; the message names it and the accepted values."""


@dataclass(frozen=True)
class SimEvent:
    """One delivery: the body as the channel sends it, and what a connector would stamp on it."""

    channel: str
    body: bytes
    shop: str
    delivery_id: str
    kind: Kind
    #: the channel's order id ("" for a malformed body)
    order_id: str = ""
    market: str = ""
    #: canonical status this delivery says (pending_payment, paid, shipped, delivered, cancelled, completed)
    status: str = ""
    #: 0 for the order's first body, n for its n-th status change (a duplicate keeps its original's)
    revision: int = 0
    #: a status change delivered before its order
    late: bool = False


# --------------------------------------------------------------------------------------------- places


@dataclass(frozen=True)
class _Place:
    region: str
    city: str
    low: int
    high: int
    step: int = 1
    lat: float = 0.0
    lon: float = 0.0


POSTCODE_DIGITS: dict[Market, int] = {
    Market.SG: 6,
    Market.MY: 5,
    Market.ID: 5,
    Market.TH: 5,
    Market.VN: 6,
    Market.PH: 4,
}

_PLACES: dict[Market, tuple[_Place, ...]] = {
    Market.SG: (
        _Place("Central", "Singapore", 18000, 19999, lat=1.2800, lon=103.8540),  # Marina Bay 018xxx-019xxx
        _Place("Central", "Singapore", 228000, 239999, lat=1.3006, lon=103.8388),  # Orchard
        _Place("Central", "Singapore", 310000, 319999, lat=1.3343, lon=103.8563),  # Toa Payoh
        _Place("East", "Singapore", 520000, 529999, lat=1.3541, lon=103.9453),  # Tampines
        _Place("North-East", "Singapore", 530000, 545999, lat=1.3612, lon=103.8863),  # Hougang, Sengkang
        _Place("North", "Singapore", 560000, 569999, lat=1.3691, lon=103.8454),  # Ang Mo Kio
        _Place("North", "Singapore", 730000, 739999, lat=1.4382, lon=103.7890),  # Woodlands
        _Place("West", "Singapore", 600000, 649999, lat=1.3404, lon=103.7090),  # Jurong
    ),
    Market.MY: (
        _Place("Wilayah Persekutuan Kuala Lumpur", "Kuala Lumpur", 50000, 60000, lat=3.1390, lon=101.6869),
        _Place("Selangor", "Petaling Jaya", 46000, 47800, lat=3.1073, lon=101.6067),
        _Place("Selangor", "Shah Alam", 40000, 40470, lat=3.0733, lon=101.5185),
        _Place("Pulau Pinang", "George Town", 10000, 11950, lat=5.4141, lon=100.3288),
        _Place("Johor", "Johor Bahru", 80000, 81300, lat=1.4927, lon=103.7414),
        _Place("Perak", "Ipoh", 30000, 31650, lat=4.5975, lon=101.0901),
        _Place("Sabah", "Kota Kinabalu", 88000, 88999, lat=5.9804, lon=116.0735),
        _Place("Sarawak", "Kuching", 93000, 93990, lat=1.5535, lon=110.3593),
    ),
    Market.ID: (
        _Place("DKI Jakarta", "Kota Administrasi Jakarta Selatan", 12110, 12960, lat=-6.2615, lon=106.8106),
        _Place("DKI Jakarta", "Kota Administrasi Jakarta Barat", 11110, 11850, lat=-6.1683, lon=106.7588),
        _Place("Banten", "Kota Tangerang", 15111, 15159, lat=-6.1783, lon=106.6319),
        _Place("Jawa Barat", "Kota Bandung", 40111, 40973, lat=-6.9175, lon=107.6191),
        _Place("Jawa Timur", "Kota Surabaya", 60111, 60299, lat=-7.2575, lon=112.7521),
        _Place("Sumatera Utara", "Kota Medan", 20111, 20371, lat=3.5952, lon=98.6722),
        _Place("Bali", "Kota Denpasar", 80111, 80239, lat=-8.6705, lon=115.2126),
        _Place("Sulawesi Selatan", "Kota Makassar", 90111, 90245, lat=-5.1477, lon=119.4327),
    ),
    Market.TH: (
        _Place("Bangkok", "Bangkok", 10100, 10600, step=10, lat=13.7563, lon=100.5018),
        _Place("Nonthaburi", "Mueang Nonthaburi", 11000, 11150, step=10, lat=13.8621, lon=100.5144),
        _Place("Chiang Mai", "Mueang Chiang Mai", 50000, 50300, step=10, lat=18.7883, lon=98.9853),
        _Place("Khon Kaen", "Mueang Khon Kaen", 40000, 40320, step=10, lat=16.4419, lon=102.8360),
        _Place("Chon Buri", "Bang Lamung", 20150, 20150, lat=12.9276, lon=100.8771),
        _Place("Phuket", "Mueang Phuket", 83000, 83150, step=10, lat=7.8804, lon=98.3923),
    ),
    Market.VN: (
        _Place("Hà Nội", "Hà Nội", 100000, 155999, lat=21.0278, lon=105.8342),
        _Place("Hồ Chí Minh", "Hồ Chí Minh", 700000, 769999, lat=10.8231, lon=106.6297),
        _Place("Đà Nẵng", "Đà Nẵng", 550000, 559999, lat=16.0544, lon=108.2022),
        _Place("Hải Phòng", "Hải Phòng", 180000, 189999, lat=20.8449, lon=106.6881),
        _Place("Cần Thơ", "Cần Thơ", 900000, 909999, lat=10.0452, lon=105.7469),
    ),
    Market.PH: (
        _Place("Metro Manila", "Makati", 1200, 1235, lat=14.5547, lon=121.0244),
        _Place("Metro Manila", "Quezon City", 1100, 1138, lat=14.6760, lon=121.0437),
        _Place("Metro Manila", "Taguig", 1630, 1638, lat=14.5176, lon=121.0509),
        _Place("Cebu", "Cebu City", 6000, 6000, lat=10.3157, lon=123.8854),
        _Place("Davao del Sur", "Davao City", 8000, 8000, lat=7.1907, lon=125.4553),
        _Place("Benguet", "Baguio", 2600, 2600, lat=16.4023, lon=120.5960),
        _Place("Iloilo", "Iloilo City", 5000, 5000, lat=10.7202, lon=122.5621),
    ),
}

_STREETS: dict[Market, tuple[str, ...]] = {
    Market.SG: (
        "Orchard Road",
        "Tampines Street 81",
        "Ang Mo Kio Avenue 3",
        "Jurong West Street 52",
        "Bedok North Road",
    ),
    Market.MY: ("Jalan Bukit Bintang", "Jalan SS 2/24", "Jalan Tun Razak", "Lebuh Chulia", "Jalan Ampang"),
    Market.ID: ("Jl. Kemang Raya", "Jl. Sudirman", "Jl. Gatot Subroto", "Jl. Diponegoro", "Jl. Ahmad Yani"),
    Market.TH: ("Sukhumvit Soi 24", "Ratchadaphisek Road", "Nimmanhaemin Road", "Phahonyothin Road", "Silom Road"),
    Market.VN: ("Nguyễn Huệ", "Lê Lợi", "Trần Hưng Đạo", "Phố Huế", "Điện Biên Phủ"),
    Market.PH: ("Ayala Avenue", "Katipunan Avenue", "Osmeña Boulevard", "J.P. Laurel Avenue", "Session Road"),
}

_NAMES: dict[Market, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Market.SG: (("Wei Ming", "Jia Hui", "Siti", "Arjun", "Mei Ling", "Daniel"), ("Tan", "Lim", "Rahman", "Ng", "Lee")),
    Market.MY: (("Nur Aisyah", "Ahmad", "Mei Yee", "Kumar", "Farah", "Jason"), ("Abdullah", "Wong", "Ismail", "Tan")),
    Market.ID: (("Rina", "Budi", "Dewi", "Agus", "Putri", "Eko"), ("Setiawati", "Santoso", "Wijaya", "Pratama")),
    Market.TH: (("Somchai", "Nattaya", "Kittipong", "Ploy", "Anong", "Chai"), ("Jaidee", "Srisuk", "Wongsa", "Boonma")),
    Market.VN: (("Minh", "Lan", "Huy", "Trang", "Tuấn", "Hoa"), ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng")),
    Market.PH: (("Maria", "Jose", "Angelica", "Mark", "Kristine", "Paolo"), ("Santos", "Reyes", "Cruz", "Bautista")),
}

_PHONE: dict[Market, tuple[str, str, int]] = {  # country code, first digits of a mobile number, digits after them
    Market.SG: ("65", "89", 7),
    Market.MY: ("60", "1", 8),
    Market.ID: ("62", "8", 10),
    Market.TH: ("66", "689", 8),
    Market.VN: ("84", "39", 8),
    Market.PH: ("63", "9", 9),
}

_UTC_OFFSET_H: dict[Market, int] = {
    Market.SG: 8,
    Market.MY: 8,
    Market.PH: 8,
    Market.ID: 7,
    Market.TH: 7,
    Market.VN: 7,
}

_COUNTRY: dict[Market, str] = {
    Market.SG: "Singapore",
    Market.MY: "Malaysia",
    Market.ID: "Indonesia",
    Market.TH: "Thailand",
    Market.VN: "Vietnam",
    Market.PH: "Philippines",
}

_CARRIERS: dict[Market, tuple[str, ...]] = {
    Market.SG: ("Ninja Van", "SPX Express", "J&T Express"),
    Market.MY: ("J&T Express", "Pos Laju", "Ninja Van"),
    Market.ID: ("J&T Express", "JNE", "SiCepat", "SPX Express"),
    Market.TH: ("Flash Express", "Kerry Express", "J&T Express"),
    Market.VN: ("Giao Hàng Nhanh", "J&T Express", "SPX Express"),
    Market.PH: ("J&T Express", "Ninja Van", "Flash Express"),
}

#: Shipping charged to the buyer, in minor units (IDR and VND whole).
_SHIPPING_MINOR: dict[Market, int] = {
    Market.SG: 299,
    Market.MY: 490,
    Market.ID: 18000,
    Market.TH: 4000,
    Market.VN: 30000,
    Market.PH: 5000,
}

#: USD -> local major units, and the price point (in minor units) prices are rounded to.
_FX: dict[Market, float] = {
    Market.SG: 1.35,
    Market.MY: 4.5,
    Market.ID: 16000,
    Market.TH: 35,
    Market.VN: 25000,
    Market.PH: 56,
}

_GRAB_SYMBOL = {"SGD": "S$", "MYR": "RM", "IDR": "Rp", "THB": "฿", "VND": "₫", "PHP": "₱"}

# ------------------------------------------------------------------------------------------- payments

_SHOPEE_PAY: dict[Market, tuple[str, ...]] = {
    Market.SG: ("ShopeePay", "Credit Card/Debit Card", "SPayLater"),
    Market.MY: ("ShopeePay", "Online Banking", "Credit Card/Debit Card"),
    Market.ID: ("ShopeePay", "Bank Transfer (Virtual Account)", "SPayLater"),
    Market.TH: ("ShopeePay", "Credit Card/Debit Card", "Mobile Banking"),
    Market.VN: ("ShopeePay", "Credit Card/Debit Card", "SPayLater"),
    Market.PH: ("ShopeePay", "GCash", "Credit Card/Debit Card"),
}
_LAZADA_PAY: dict[Market, tuple[str, ...]] = {
    Market.SG: ("MIXEDCARD", "PAYPAL", "LAZADA_WALLET"),
    Market.MY: ("MIXEDCARD", "AC_WALLET_BOOST", "GN_TNG_EBANK"),
    Market.ID: ("BNI_VA", "DANA_EBANK", "WALLET_OVO", "KREDIVO"),
    Market.TH: ("MIXEDCARD", "TMN_WALLET", "LAZADA_WALLET"),
    Market.VN: ("MOMO_WALLET", "ZALOPAY", "NAPAS"),
    Market.PH: ("GCASH", "MIXEDCARD", "LAZADA_WALLET"),
}
_TIKTOK_PAY: dict[Market, tuple[str, ...]] = {
    Market.SG: ("Credit/Debit card", "GrabPay", "PayNow"),
    Market.MY: ("Touch 'n Go eWallet", "Online Banking", "Credit/Debit card"),
    Market.ID: ("GoPay", "DANA", "BCA Virtual Account"),
    Market.TH: ("TrueMoney Wallet", "PromptPay", "Credit/Debit card"),
    Market.VN: ("MoMo", "ZaloPay", "Credit/Debit card"),
    Market.PH: ("GCash", "Maya", "Credit/Debit card"),
}
_TOKOPEDIA_PAY = ("BCA Virtual Account", "GoPay", "OVO", "Kartu Kredit")
_SHOPIFY_PAY = ("shopify_payments", "shopify_payments", "paypal", "atome")
_POS_PAY = ("card", "ewallet", "cash", "bank_transfer")

# ----------------------------------------------------------------------------------- channel statuses

#: canonical status -> what each channel says. Grab and the full-body channels handled in their builders.
_STATUS_NAMES: dict[str, dict[str, str]] = {
    "shopee": {
        "pending_payment": "UNPAID",
        "paid": "READY_TO_SHIP",
        "shipped": "SHIPPED",
        "delivered": "TO_CONFIRM_RECEIVE",
        "cancelled": "CANCELLED",
    },
    "lazada": {
        "pending_payment": "unpaid",
        "paid": "pending",
        "shipped": "shipped",
        "delivered": "delivered",
        "cancelled": "canceled",
    },
    "tiktok": {
        "pending_payment": "UNPAID",
        "paid": "AWAITING_SHIPMENT",
        "shipped": "IN_TRANSIT",
        "delivered": "DELIVERED",
        "cancelled": "CANCELLED",
    },
    "tokopedia": {"paid": "220", "shipped": "500", "delivered": "600", "cancelled": "15"},
    "grab": {"shipped": "COLLECTED", "delivered": "DELIVERED", "cancelled": "CANCELLED"},
}

#: Channels whose status changes are pushes; the others send the whole order again.
PUSH_CHANNELS = frozenset({"shopee", "lazada", "tiktok", "grab"})

# ---------------------------------------------------------------------------------------------- catalog

_PRODUCTS: tuple[tuple[str, str, int, int], ...] = (  # SKU prefix, name, USD cents low and high
    ("EARBUD-PRO", "Wireless Earbuds Pro", 1500, 6000),
    ("TEE-CREW", "Cotton Crew Tee", 800, 1500),
    ("SERUM-VITC", "Vitamin C Brightening Serum 30ml", 1000, 2500),
    ("CABLE-USBC", "USB-C Cable 1m", 200, 600),
    ("KOPI-GAYO", "Kopi Arabika Gayo 250g", 500, 1200),
    ("MUG-ENM", "Enamel Mug", 500, 1000),
    ("CAP-BASEBALL", "Baseball Cap", 600, 1200),
    ("TONER-ROSE", "Rose Water Hydrating Toner 100ml", 600, 1500),
    ("CASE-PHONE", "Shockproof Phone Case", 300, 800),
    ("SNACK-BOX", "Assorted Snack Box", 300, 900),
)
_VARIANTS = ("BLK", "WHT", "NVY", "RED", "GRN", "M", "L", "S")


@dataclass(frozen=True)
class _Sku:
    index: int
    code: str
    name: str
    usd_cents: int


def _catalog(skus: int | Sequence[str], rng: random.Random) -> tuple[_Sku, ...]:
    codes: list[str]
    if isinstance(skus, int):
        codes = []
        for i in range(skus):
            prefix = _PRODUCTS[i % len(_PRODUCTS)][0]
            codes.append(f"{prefix}-{_VARIANTS[(i // len(_PRODUCTS)) % len(_VARIANTS)]}-{i:04d}")
    else:
        codes = list(skus)
    out = []
    for i, code in enumerate(codes):
        _, name, low, high = _PRODUCTS[i % len(_PRODUCTS)]
        out.append(_Sku(i, code, name, rng.randint(low, high)))
    return tuple(out)


def _price_point(minor: float, market: Market) -> int:
    """The local price point nearest ``minor``: 29.90 SGD, 49.90 MYR, 299 THB, 499 PHP, 85000 IDR, 199000 VND."""
    if market in (Market.SG, Market.MY):
        return max(1, round(minor / 100)) * 100 - 10
    if market in (Market.TH, Market.PH):
        return (max(1, round(minor / 1000)) * 10 - 1) * 100
    return max(1, round(minor / 1000)) * 1000  # IDR, VND: whole units, in thousands


def _price_minor(usd_cents: int, market: Market) -> int:
    exponent = CURRENCY_EXPONENT[MARKET_CURRENCY[market]]
    return _price_point(usd_cents / 100 * _FX[market] * 10**exponent, market)


def _flash_minor(unit: int, market: Market) -> int:
    """About 40 % off, at a price point; never above ``unit``."""
    return min(_price_point(unit * 0.6, market), unit)


def _variant(code: str) -> tuple[str, str]:
    """(product, variant) of a catalog SKU code like TEE-CREW-BLK-0001; (code, "") for other codes."""
    parts = code.rsplit("-", 2)
    return (parts[0], parts[1]) if len(parts) == 3 else (code, "")


# ------------------------------------------------------------------------------------------------ money


def _major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-CURRENCY_EXPONENT[currency])


def _float(minor: int, currency: str) -> float | int:
    """Major units as a JSON number (Shopee, Lazada's float SDKs): 29.9, 85000."""
    if CURRENCY_EXPONENT[currency] == 0:
        return minor
    return float(_major(minor, currency))


def _text(minor: int, currency: str, places: int | None = None) -> str:
    """Major units as a decimal string: "29.90"; "85000" for IDR unless ``places`` says otherwise."""
    digits = CURRENCY_EXPONENT[currency] if places is None else places
    return f"{_major(minor, currency):.{digits}f}"


# ------------------------------------------------------------------------------------------------ times


def _zone(market: Market) -> timezone:
    return timezone(timedelta(hours=_UTC_OFFSET_H[market]))


def _iso(epoch_s: int, market: Market) -> str:
    return datetime.fromtimestamp(epoch_s, tz=_zone(market)).isoformat()


def _lazada_time(epoch_s: int, market: Market) -> str:
    return datetime.fromtimestamp(epoch_s, tz=_zone(market)).strftime("%Y-%m-%d %H:%M:%S %z")


def _utc_z(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------ order


@dataclass
class _Line:
    sku: _Sku
    quantity: int
    unit_minor: int
    paid_minor: int
    promotion: str


@dataclass
class _Order:
    serial: int
    channel: str
    market: Market
    currency: str
    order_id: str
    shop: str
    shop_name: str
    created_s: int
    lines: list[_Line]
    cod: bool
    payment: str
    pending_first: bool
    first_name: str
    last_name: str
    phone: str
    place: _Place
    postcode: str
    street: str
    shipping_minor: int
    carrier: str
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def items_minor(self) -> int:
        return sum(line.paid_minor * line.quantity for line in self.lines)

    @property
    def units(self) -> list[_Line]:
        """One entry per unit (Lazada and TikTok send one object per unit)."""
        return [line for line in self.lines for _ in range(line.quantity)]


class Simulator:
    """Reproducible raw traffic: ``events(count)`` yields the same bytes for the same parameters, every time."""

    def __init__(
        self,
        seed: int = 1,
        channels: Sequence[str] | None = None,
        markets: Sequence[str] | None = None,
        *,
        skus: int | Sequence[str] = 200,
        hot_share: float = 0.7,
        cod_share: Mapping[str, float] | None = None,
        duplicate_rate: float = 0.02,
        cancel_rate: float = 0.1,
        late_update_rate: float = 0.05,
        malformed_rate: float = 0.0,
        start: datetime | None = None,
        order_gap_s: float = 2.0,
    ) -> None:
        """``channels``/``markets``: names (default all); ``cod_share``: per market, overriding the defaults;
        ``order_gap_s``: mean seconds between new orders in body times."""
        self.seed = seed
        self.channels = _known("channel", channels, CHANNELS)
        self.markets = tuple(Market(m) for m in _known("market", markets, tuple(m.value for m in Market)))
        self.pairs = [(c, m) for c in self.channels for m in CHANNEL_MARKETS[c] if m in self.markets]
        if not self.pairs:
            served = "; ".join(f"{c}: {', '.join(CHANNEL_MARKETS[c])}" for c in self.channels)
            raise SimulatorError(f"no selected channel serves a selected market ({served})")
        self.pair_weights = [CHANNEL_WEIGHT[c] * MARKET_WEIGHT[m] for c, m in self.pairs]
        for name, value in (
            ("hot_share", hot_share),
            ("duplicate_rate", duplicate_rate),
            ("cancel_rate", cancel_rate),
            ("late_update_rate", late_update_rate),
            ("malformed_rate", malformed_rate),
        ):
            _share(name, value)
        self.hot_share = hot_share
        self.duplicate_rate = duplicate_rate
        self.cancel_rate = cancel_rate
        self.late_update_rate = late_update_rate
        self.malformed_rate = malformed_rate
        self.cod_share = dict(DEFAULT_COD_SHARE)
        for market, share in (cod_share or {}).items():
            if market not in Market.__members__:
                raise SimulatorError(f"cod_share: unknown market {market!r}; known: {', '.join(Market)}")
            self.cod_share[Market(market)] = _share(f"cod_share[{market}]", share)
        if not order_gap_s > 0 or not math.isfinite(order_gap_s):
            raise SimulatorError(f"order_gap_s must be a positive number of seconds, got {order_gap_s!r}")
        self.order_gap_s = order_gap_s
        if start is not None and start.utcoffset() is None:
            raise SimulatorError("start must carry a UTC offset")
        self.start_s = int((start or DEFAULT_START).timestamp())
        if isinstance(skus, int) and skus < 1:
            raise SimulatorError(f"skus must be at least 1, got {skus}")
        self.catalog = _catalog(skus, random.Random(f"catalog:{seed}"))
        if not self.catalog:
            raise SimulatorError("skus: the catalog is empty")
        if len({sku.code for sku in self.catalog}) != len(self.catalog):
            raise SimulatorError("skus: SKU codes must be unique")
        self.hot_count = max(1, round(len(self.catalog) * HOT_SKUS))
        self.templates = {channel: orjson.loads(sample(name)) for channel, name in _SAMPLES.items()}

    def __iter__(self) -> Iterator[SimEvent]:
        return self.events()

    def events(self, count: int | None = None) -> Iterator[SimEvent]:
        """The first ``count`` deliveries (all of them, forever, when None); a fresh run on every call."""
        return _Run(self).events(count)

    @property
    def hot_skus(self) -> tuple[str, ...]:
        return tuple(sku.code for sku in self.catalog[: self.hot_count])


def _known(what: str, names: Sequence[str] | None, known: Sequence[str]) -> tuple[str, ...]:
    if names is None:
        return tuple(known)
    chosen = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise SimulatorError(f"unknown {what}(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    if not chosen:
        raise SimulatorError(f"no {what} selected; known: {', '.join(known)}")
    return chosen


def _share(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise SimulatorError(f"{name} must be a share between 0 and 1, got {value!r}")
    return float(value)


class _Run:
    """One pass over the simulated traffic; all randomness from one ``random.Random(seed)``."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.rng = random.Random(sim.seed)
        self.clock_s = sim.start_s
        self.serial = 0
        self.step = 0
        self.seq = 0
        self.due: list[tuple[int, int, SimEvent]] = []
        self.cold = range(sim.hot_count, len(sim.catalog))
        self.cold_cum = list(itertools.accumulate(1 / (rank + 1) ** 0.8 for rank in range(len(self.cold))))
        self.shops = {(channel, market): self._shop(channel, market) for channel, market in sim.pairs}

    def events(self, count: int | None) -> Iterator[SimEvent]:
        if count is not None and count < 0:
            raise SimulatorError(f"count must be >= 0, got {count}")
        rng = self.rng
        while count is None or self.step < count:
            if rng.random() < self.sim.malformed_rate:
                event = self._malformed()
            else:
                if not self.due or self.due[0][0] > self.step:
                    self._new_order()
                event = heapq.heappop(self.due)[2]
            yield event
            self.step += 1
            if event.kind in ("order", "status") and rng.random() < self.sim.duplicate_rate:
                self._at(self.step + rng.randint(0, 30), replace(event, kind="duplicate", late=False))

    def _at(self, step: int, event: SimEvent) -> None:
        heapq.heappush(self.due, (step, self.seq, event))
        self.seq += 1

    # ------------------------------------------------------------------------------------ scheduling

    def _new_order(self) -> None:
        rng = self.rng
        channel, market = rng.choices(self.sim.pairs, weights=self.sim.pair_weights)[0]
        self.clock_s += max(1, round(rng.expovariate(1 / self.sim.order_gap_s)))
        order = self._order(channel, market)
        groups = [
            self._deliveries(order, status, at_s, revision) for revision, (status, at_s) in enumerate(self._path(order))
        ]
        due = [self.step]
        for i in range(1, len(groups)):
            due.append(due[-1] + (rng.randint(1, 12) if i == 1 else rng.randint(3, 40)))
        if len(groups) > 1 and rng.random() < self.sim.late_update_rate:
            # the first status change overtakes its order: it goes now, the order a few deliveries later
            groups[1] = [replace(e, late=True) for e in groups[1]]
            due[0], due[1] = self.step + len(groups[1]) + rng.randint(0, 5), self.step
            for i in range(2, len(due)):
                due[i] = max(due[i], due[i - 1] + 1, due[0] + 1)
        for step, group in zip(due, groups, strict=True):
            for event in group:
                self._at(step, event)

    def _path(self, order: _Order) -> list[tuple[str, int]]:
        """(canonical status, epoch s) of the order's first body and each status change after it."""
        rng = self.rng
        t = order.created_s
        if order.channel == "pos" and order.source == "pos":
            return [("completed", t)]  # a counter sale is over when it is sent
        food = order.channel == "grab"
        path = [("pending_payment" if order.pending_first else "paid", t)]
        if order.pending_first:
            t += rng.randint(60, 1800)
            path.append(("paid", t))
        if rng.random() < self.sim.cancel_rate:
            if order.pending_first and rng.random() < 0.5:
                path.pop()  # never paid: cancelled when the payment window closes
            t += rng.randint(120, 600) if food else rng.randint(300, 86_400)
            path.append(("cancelled", t))
            return path
        t += rng.randint(600, 2400) if food else rng.randint(4 * 3600, 48 * 3600)
        path.append(("shipped", t))
        t += rng.randint(600, 2400) if food else rng.randint(86_400, 4 * 86_400)
        path.append(("delivered", t))
        return path

    def _deliveries(self, order: _Order, status: str, at_s: int, revision: int) -> list[SimEvent]:
        """The deliveries that say ``status``: the order body, or the channel's push(es) of a change."""
        channel = order.channel
        style = "tiktok" if order.extra.get("tiktok_shaped") else channel
        kind: Kind = "order" if revision == 0 else "status"
        if revision > 0 and style in PUSH_CHANNELS:
            bodies = getattr(self, f"_{style}_push")(order, status, at_s)
        else:
            bodies = [getattr(self, f"_{style}_body")(order, status, at_s)]
        return [
            SimEvent(
                channel=channel,
                body=body,
                shop=order.shop,
                delivery_id=delivery_id or self._delivery_id(channel, body),
                kind=kind,
                order_id=order.order_id,
                market=order.market.value,
                status=status,
                revision=revision,
            )
            for body, delivery_id in bodies
        ]

    def _delivery_id(self, channel: str, body: bytes) -> str:
        """What the webhook service would take as the delivery id (connectors.webhooks.identity)."""
        if channel in ("shopee", "lazada", "tiktok"):
            return "sha256:" + hashlib.sha256(body).hexdigest()
        ident = self._uuid()
        return ident if channel == "shopify" else f"{channel}-{ident}"

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # ----------------------------------------------------------------------------------------- orders

    def _shop(self, channel: str, market: Market) -> tuple[str, str]:
        rng = self.rng
        city = _PLACES[market][0].city.split()[-1].lower()
        name = f"{rng.choice(('Kopi', 'Bintang', 'Mega', 'Sinar', 'Lotus', 'Harbour'))} {market.value} Store"
        ids = {
            "shopee": str(rng.randint(10_000_000, 99_999_999)),
            "lazada": str(rng.randint(1_000_000_000, 1_999_999_999)),
            "tiktok": str(7_494_000_000_000_000_000 + rng.randint(0, 999_999_999_999)),
            "tokopedia": str(rng.randint(10_000_000, 99_999_999)),
            "shopify": f"{name.split()[0].lower()}-{market.value.lower()}.myshopify.com",
            "grab": f"{rng.randint(1, 9)}-{self._alnum(14)}",
            "pos": f"{city}-{rng.randint(1, 9):02d}",
        }
        return ids[channel], name

    def _alnum(self, n: int) -> str:
        return "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(n))

    def _order(self, channel: str, market: Market) -> _Order:
        rng = self.rng
        self.serial += 1
        currency = MARKET_CURRENCY[market]
        cod = rng.random() < self.sim.cod_share[market]
        source = ""
        if channel == "pos":
            source = rng.choice(("facebook", "instagram", "whatsapp")) if cod else rng.choice(_POS_SOURCES)
        payment = self._payment(channel, market, cod, source)
        pending_first = (
            not cod
            and channel not in ("grab", "tokopedia")
            and not (channel == "pos" and source == "pos")
            and rng.random() < UNPAID_FIRST
        )
        if pending_first and channel == "shopify":
            payment = "Bank Deposit"
        if pending_first and channel == "pos":
            payment = "bank_transfer"
        place = rng.choice(_PLACES[market])
        code = place.low + rng.randrange(0, (place.high - place.low) // place.step + 1) * place.step
        first = rng.choice(_NAMES[market][0])
        last = rng.choice(_NAMES[market][1])
        country, lead, rest = _PHONE[market]
        phone = country + rng.choice(lead) + "".join(str(rng.randint(0, 9)) for _ in range(rest))
        shop, shop_name = self.shops[(channel, market)]
        lines = self._lines(market)
        shipping = 0 if rng.random() < 0.3 else _SHIPPING_MINOR[market]  # free-shipping vouchers
        if channel == "pos" and source == "pos":
            shipping = 0
        extra: dict[str, Any] = {"tiktok_shaped": channel == "tokopedia" and rng.random() < 0.5}
        return _Order(
            serial=self.serial,
            channel=channel,
            market=market,
            currency=currency,
            order_id=self._order_id("tiktok" if extra["tiktok_shaped"] else channel, market),
            shop=shop,
            shop_name=shop_name,
            created_s=self.clock_s,
            lines=lines,
            cod=cod,
            payment=payment,
            pending_first=pending_first,
            first_name=first,
            last_name=last,
            phone=phone,
            place=place,
            postcode=str(code).zfill(POSTCODE_DIGITS[market]),
            street=f"{rng.randint(1, 250)} {rng.choice(_STREETS[market])}",
            shipping_minor=shipping,
            carrier=rng.choice(_CARRIERS[market]),
            source=source,
            extra=extra,
        )

    def _payment(self, channel: str, market: Market, cod: bool, source: str) -> str:
        rng = self.rng
        if channel == "shopee":
            return "Cash on Delivery" if cod else rng.choice(_SHOPEE_PAY[market])
        if channel == "lazada":
            return "COD" if cod else rng.choice(_LAZADA_PAY[market])
        if channel == "tiktok":
            return "Cash on delivery" if cod else rng.choice(_TIKTOK_PAY[market])
        if channel == "tokopedia":
            return "Bayar di Tempat" if cod else rng.choice(_TOKOPEDIA_PAY)
        if channel == "shopify":
            return "Cash on Delivery (COD)" if cod else rng.choice(_SHOPIFY_PAY)
        if channel == "grab":
            return "CASH" if cod else "CASHLESS"
        if cod:
            return "cod"
        return rng.choice(_POS_PAY if source == "pos" else ("bank_transfer", "ewallet", "card"))

    def _order_id(self, channel: str, market: Market) -> str:
        rng = self.rng
        n = self.serial
        day = datetime.fromtimestamp(self.clock_s, tz=_zone(market))
        if channel == "shopee":
            return day.strftime("%y%m%d") + f"{n:04X}"[-4:] + self._alnum(4)
        if channel == "lazada":
            return f"{'634125'[list(Market).index(market)]}{n:07d}{rng.randint(0, 9_999_999):07d}"
        if channel == "tiktok":
            return f"57{n:08d}{rng.randint(0, 99_999_999):08d}"
        if channel == "tokopedia":
            return f"{1_200_000_000 + n * 10 + rng.randint(0, 9)}"
        if channel == "shopify":
            return str(5_623_817_000_000 + n * 1000 + rng.randint(0, 999))
        if channel == "grab":
            return f"{rng.randint(100, 999)}-{self._alnum(12)}"
        return f"{market.value}-POS-{n:07d}"

    def _lines(self, market: Market) -> list[_Line]:
        rng = self.rng
        catalog = self.sim.catalog
        hot = self.sim.hot_count
        count = rng.choices((1, 2, 3), weights=(60, 25, 15))[0]
        lines: list[_Line] = []
        taken: set[int] = set()
        for _ in range(count):
            for _attempt in range(5):
                if rng.random() < self.sim.hot_share or not self.cold:
                    index = rng.randrange(hot)
                else:
                    index = rng.choices(self.cold, cum_weights=self.cold_cum)[0]
                if index not in taken:
                    break
            if index in taken:
                continue
            taken.add(index)
            sku = catalog[index]
            unit = _price_minor(sku.usd_cents, market)
            if index < hot:  # the flash sale: deep discount, one or two per buyer
                quantity = rng.choices((1, 2), weights=(80, 20))[0]
                lines.append(_Line(sku, quantity, unit, _flash_minor(unit, market), "flash_sale"))
            else:
                quantity = rng.choices((1, 2, 3, 4, 5), weights=(65, 20, 8, 4, 3))[0]
                lines.append(_Line(sku, quantity, unit, unit, ""))
        return lines

    def _malformed(self) -> SimEvent:
        """A broken delivery on a real channel: cut short, not UTF-8, or JSON that is no object."""
        rng = self.rng
        channel, market = rng.choices(self.sim.pairs, weights=self.sim.pair_weights)[0]
        order = self._order(channel, market)
        good: bytes = getattr(self, f"_{channel}_body")(order, "paid", order.created_s)[0]
        how = rng.randrange(3)
        if how == 0:
            body = good[: rng.randint(1, len(good) - 1)]
        elif how == 1:
            body = b"\xff\xfe" + good[2:]
        else:
            body = b"[" + good + b"]"
        return SimEvent(channel, body, order.shop, self._delivery_id(channel, body), "malformed", market=market.value)

    # ---------------------------------------------------------------------------------- channel bodies

    def _template(self, channel: str) -> Any:
        return copy.deepcopy(self.sim.templates[channel])

    def _shopee_body(self, order: _Order, status: str, at_s: int) -> tuple[bytes, str | None]:
        doc = self._template("shopee")
        doc["request_id"] = self._hex(20)
        o = doc["response"]["order_list"][0]
        item_template = o["item_list"][0]
        market, currency = order.market, order.currency
        o.update(
            order_sn=order.order_id,
            region=market.value,
            currency=currency,
            cod=order.cod,
            total_amount=_float(order.items_minor + order.shipping_minor, currency),
            order_status=_STATUS_NAMES["shopee"][status],
            shipping_carrier=order.carrier,
            payment_method=order.payment,
            estimated_shipping_fee=_float(order.shipping_minor, currency),
            create_time=order.created_s,
            update_time=at_s + 2,
            pay_time=order.created_s + 60 if status != "pending_payment" and not order.cod else 0,
            ship_by_date=order.created_s + 2 * 86_400,
            days_to_ship=2,
            buyer_user_id=100_000 + order.serial,
            buyer_username=f"{order.first_name}.{order.last_name}".lower().replace(" ", ""),
        )
        o["recipient_address"] = {
            "name": f"{order.first_name} {order.last_name}",
            "phone": order.phone,
            "district": "",
            "city": order.place.city,
            "state": order.place.region,
            "region": market.value,
            "zipcode": order.postcode,
            "full_address": f"{order.street}, {order.place.city} {order.postcode}",
        }
        items = []
        for line in order.lines:
            item = dict(item_template)
            item.update(
                item_id=100_200_000 + line.sku.index * 100,
                item_name=line.sku.name,
                item_sku=_variant(line.sku.code)[0],
                model_id=5000 + line.sku.index,
                model_name=_variant(line.sku.code)[1],
                model_sku=line.sku.code,
                model_quantity_purchased=line.quantity,
                model_original_price=_float(line.unit_minor, currency),
                model_discounted_price=_float(line.paid_minor, currency),
                promotion_type=line.promotion,
            )
            items.append(item)
        o["item_list"] = items
        return orjson.dumps(doc), None

    def _shopee_push(self, order: _Order, status: str, at_s: int) -> list[tuple[bytes, str | None]]:
        push = {
            "code": 3,
            "shop_id": int(order.shop),
            "timestamp": at_s + 1,
            "data": {"ordersn": order.order_id, "status": _STATUS_NAMES["shopee"][status], "update_time": at_s},
        }
        return [(orjson.dumps(push), None)]

    def _lazada_body(self, order: _Order, status: str, at_s: int) -> tuple[bytes, str | None]:
        doc = self._template("lazada")
        market, currency = order.market, order.currency
        strings = self.rng.random() < 0.5  # money as strings or floats, depending on the SDK

        def money(minor: int) -> str | float | int:
            return _text(minor, currency, 2) if strings else _float(minor, currency)

        units = order.units
        price = sum(line.unit_minor for line in units)
        voucher = sum(line.unit_minor - line.paid_minor for line in units)
        o = doc["order"]["data"]
        created = _lazada_time(order.created_s, market)
        updated = _lazada_time(at_s + 5, market)
        address = {
            **o["address_shipping"],
            "first_name": f"{order.first_name} {order.last_name}",
            "phone": order.phone,
            "address1": order.street,
            "address3": order.place.region,
            "address4": order.place.city,
            "address5": order.postcode,
            "city": order.place.city,
            "post_code": order.postcode,
            "country": _COUNTRY[market],
        }
        o.update(
            order_id=int(order.order_id),
            order_number=int(order.order_id),
            created_at=created,
            updated_at=updated,
            price=_text(price, currency, 2),
            voucher=money(voucher),
            voucher_seller=money(voucher),
            voucher_platform=money(0),
            voucher_code="FLASH11" if voucher else "",
            shipping_fee=money(order.shipping_minor),
            shipping_fee_original=money(order.shipping_minor),
            payment_method=order.payment,
            items_count=len(units),
            statuses=[_STATUS_NAMES["lazada"][status]],
            customer_first_name=order.first_name,
            customer_last_name=order.last_name,
            address_billing=address,
            address_shipping=address,
        )
        doc["order"]["request_id"] = self._hex(25)
        item_template = doc["items"]["data"][0]
        base_item_id = int(order.order_id) + 100_000
        items = []
        unit_ids = []
        for i, line in enumerate(units):
            item = dict(item_template)
            unit_ids.append(base_item_id + i)
            item.update(
                order_item_id=base_item_id + i,
                order_id=int(order.order_id),
                shop_id=order.shop_name,
                name=line.sku.name,
                sku=line.sku.code,
                sku_id=str(18_273_600_000 + line.sku.index),
                shop_sku=f"{2_345_600_000 + line.sku.index}_{market.value}-{18_273_600_000 + line.sku.index}",
                currency=currency,
                status=_STATUS_NAMES["lazada"][status],
                item_price=money(line.unit_minor),
                paid_price=money(line.paid_minor),
                voucher_amount=money(line.unit_minor - line.paid_minor),
                voucher_seller=money(line.unit_minor - line.paid_minor),
                voucher_platform=money(0),
                voucher_code="FLASH11" if line.promotion else "",
                shipping_amount=money(0),
                shipping_fee_original=money(0),
                package_id="",
                sla_time_stamp=_iso(order.created_s + 2 * 86_400, market),
                created_at=created,
                updated_at=updated,
            )
            items.append(item)
        doc["items"]["data"] = items
        doc["items"]["request_id"] = self._hex(25)
        order.extra["lazada_units"] = unit_ids
        return orjson.dumps(doc), None

    def _lazada_push(self, order: _Order, status: str, at_s: int) -> list[tuple[bytes, str | None]]:
        """One push per order line (Lazada: per unit), each its own delivery."""
        pushes: list[tuple[bytes, str | None]] = []
        for i, line_id in enumerate(order.extra["lazada_units"]):
            push = {
                "seller_id": order.shop,
                "message_type": 0,
                "data": {
                    "order_status": _STATUS_NAMES["lazada"][status],
                    "trade_order_id": order.order_id,
                    "trade_order_line_id": str(line_id),
                    "status_update_time": at_s,
                },
                "timestamp": (at_s + 1) * 1000 + i,
                "site": f"lazada_{order.market.value.lower()}",
            }
            pushes.append((orjson.dumps(push), None))
        return pushes

    def _tiktok_body(self, order: _Order, status: str, at_s: int) -> tuple[bytes, str | None]:
        doc = self._template("tiktok")
        doc["request_id"] = self._hex(34).upper()
        o = doc["data"]["orders"][0]
        market, currency = order.market, order.currency
        names = _STATUS_NAMES["tiktok"]
        paid = status != "pending_payment"
        o.update(
            id=order.order_id,
            status=names[status],
            create_time=order.created_s,
            update_time=at_s + 2,
            paid_time=order.created_s + 60 if paid else 0,
            rts_sla_time=order.created_s + 2 * 86_400,
            tts_sla_time=order.created_s + 4 * 86_400,
            shipping_due_time=order.created_s + 2 * 86_400,
            collection_due_time=order.created_s + 3 * 86_400,
            delivery_due_time=order.created_s + 7 * 86_400,
            is_cod=order.cod,
            payment_method_name=order.payment,
            user_id=str(7_494_012_345_678_900_000 + order.serial),
            shipping_provider=order.carrier,
        )
        original = sum(line.unit_minor * line.quantity for line in order.lines)
        o["payment"] = {
            **o["payment"],
            "currency": currency,
            "original_total_product_price": _text(original, currency),
            "seller_discount": _text(original - order.items_minor, currency),
            "sub_total": _text(order.items_minor, currency),
            "original_shipping_fee": _text(order.shipping_minor, currency),
            "shipping_fee": _text(order.shipping_minor, currency),
            "total_amount": _text(order.items_minor + order.shipping_minor, currency),
        }
        masked = f"(+{order.phone[:2]}){order.phone[2:4]}*****{order.phone[-2:]}"
        o["recipient_address"] = {
            **o["recipient_address"],
            "name": f"{order.first_name} {order.last_name[0]}.",
            "phone_number": masked,
            "full_address": f"{order.street}, {order.place.city}, {order.place.region} {order.postcode}",
            "address_detail": order.street,
            "address_line1": order.street,
            "postal_code": order.postcode,
            "region_code": market.value,
            "district_info": [
                {"address_level": "L0", "address_level_name": "Country", "address_name": _COUNTRY[market]},
                {"address_level": "L1", "address_level_name": "Province", "address_name": order.place.region},
                {"address_level": "L2", "address_level_name": "City", "address_name": order.place.city},
            ],
        }
        item_template = o["line_items"][0]
        items = []
        for i, line in enumerate(order.units):
            item = dict(item_template)
            item.update(
                id=f"{order.order_id[:-4]}{i + 1:04d}",
                sku_id=str(1_729_512_345_600_000_000 + line.sku.index),
                seller_sku=line.sku.code,
                product_id=str(1_729_501_234_500_000_000 + line.sku.index),
                product_name=line.sku.name,
                original_price=_text(line.unit_minor, currency),
                sale_price=_text(line.paid_minor, currency),
                seller_discount=_text(line.unit_minor - line.paid_minor, currency),
                currency=currency,
                display_status=names[status],
                shipping_provider_name=order.carrier,
            )
            items.append(item)
        o["line_items"] = items
        return orjson.dumps(doc), None

    def _tiktok_push(self, order: _Order, status: str, at_s: int) -> list[tuple[bytes, str | None]]:
        notification = str(7_300_000_000_000_000_000 + self.rng.getrandbits(59))
        push = {
            "type": 1,
            "tts_notification_id": notification,
            "shop_id": order.shop,
            "timestamp": at_s + 1,
            "data": {"order_id": order.order_id, "order_status": _STATUS_NAMES["tiktok"][status], "update_time": at_s},
        }
        return [(orjson.dumps(push), notification)]

    def _tokopedia_body(self, order: _Order, status: str, at_s: int) -> tuple[bytes, str | None]:
        doc = self._template("tokopedia")
        product_template = doc["products"][0]
        products = []
        for line in order.lines:
            product = dict(product_template)
            product.update(
                id=2_150_000_000 + line.sku.index,
                Name=line.sku.name,
                quantity=line.quantity,
                notes="",
                price=line.paid_minor,
                total_price=line.paid_minor * line.quantity,
                sku=line.sku.code,
            )
            products.append(product)
        day = datetime.fromtimestamp(order.created_s, tz=_zone(order.market)).strftime("%Y%m%d")
        doc.update(
            order_id=int(order.order_id),
            invoice_ref_num=f"INV/{day}/MPL/{order.order_id}",
            is_cod_mitra=order.cod,
            products=products,
            products_fulfilled=[
                {"product_id": p["id"], "quantity_deliver": p["quantity"], "quantity_reject": 0} for p in products
            ],
            shop_id=int(order.shop),
            shop_name=order.shop_name,
            payment_id=50_000_000 + order.serial,
            payment_info={"gateway_name": order.payment},
            order_status=int(_STATUS_NAMES["tokopedia"][status]),
            create_time=order.created_s,
            update_time=at_s,
        )
        doc["customer"] = {**doc["customer"], "id": 90_000_000 + order.serial, "name": order.first_name}
        doc["recipient"] = {
            "name": f"{order.first_name} {order.last_name}",
            "phone": order.phone,
            "address": {
                **doc["recipient"]["address"],
                "address_full": f"{order.street}, {order.place.city}, {order.place.region}, {order.postcode}",
                "district": order.place.city,
                "city": order.place.city,
                "province": order.place.region,
                "postal_code": order.postcode,
                "geo": f"{order.place.lat},{order.place.lon}",
            },
        }
        doc["logistics"] = {**doc["logistics"], "shipping_agency": order.carrier}
        doc["amt"] = {
            **doc["amt"],
            "ttl_product_price": order.items_minor,
            "shipping_cost": order.shipping_minor,
            "ttl_amount": order.items_minor + order.shipping_minor,
        }
        return orjson.dumps(doc), None

    def _shopify_body(self, order: _Order, status: str, at_s: int) -> tuple[bytes, str | None]:
        doc = self._template("shopify")
        market, currency = order.market, order.currency

        def amount(minor: int) -> str:
            return _text(minor, currency, 2)

        def money_set(minor: int) -> dict[str, Any]:
            one = {"amount": amount(minor), "currency_code": currency}
            return {"shop_money": one, "presentment_money": dict(one)}

        cancelled = status == "cancelled"
        if order.cod:
            financial = "paid" if status == "delivered" else "voided" if cancelled else "pending"
        elif status == "pending_payment" or (cancelled and order.pending_first and not order.extra.get("paid")):
            financial = "voided" if cancelled else "pending"
        else:
            financial = "refunded" if cancelled else "paid"
        if status == "paid":
            order.extra["paid"] = True
        fulfilled = status in ("shipped", "delivered")
        total = order.items_minor + order.shipping_minor
        number = 1000 + order.serial
        email = f"{order.first_name.split()[0].lower()}.{order.last_name.lower()}@example.com"
        doc.update(
            id=int(order.order_id),
            admin_graphql_api_id=f"gid://shopify/Order/{order.order_id}",
            name=f"#{number}",
            order_number=number,
            email=email,
            created_at=_iso(order.created_s, market),
            updated_at=_iso(at_s + 1, market),
            processed_at=_iso(order.created_s, market),
            cancelled_at=_iso(at_s, market) if cancelled else None,
            cancel_reason="customer" if cancelled else None,
            currency=currency,
            presentment_currency=currency,
            financial_status=financial,
            fulfillment_status="fulfilled" if fulfilled else None,
            gateway=order.payment,
            payment_gateway_names=[order.payment],
            subtotal_price=amount(order.items_minor),
            subtotal_price_set=money_set(order.items_minor),
            total_discounts=amount(0),
            total_line_items_price=amount(order.items_minor),
            total_tax=amount(0),
            total_price=amount(total),
            total_price_set=money_set(total),
            total_shipping_price_set=money_set(order.shipping_minor),
            discount_codes=[],
        )
        if status == "delivered":
            doc["fulfillments"] = [{"status": "success", "shipment_status": "delivered"}]
        line_template = doc["line_items"][0]
        lines = []
        for i, line in enumerate(order.lines):
            item = dict(line_template)
            item.update(
                id=int(order.order_id) * 10 + i,
                admin_graphql_api_id=f"gid://shopify/LineItem/{int(order.order_id) * 10 + i}",
                product_id=8_011_200_500_000 + line.sku.index,
                variant_id=44_120_593_200_000 + line.sku.index,
                title=line.sku.name,
                variant_title=_variant(line.sku.code)[1],
                sku=line.sku.code,
                vendor=order.shop_name,
                quantity=line.quantity,
                current_quantity=line.quantity,
                fulfillable_quantity=0 if fulfilled else line.quantity,
                fulfillment_status="fulfilled" if fulfilled else None,
                price=amount(line.paid_minor),
                price_set=money_set(line.paid_minor),
                total_discount=amount(0),
                discount_allocations=[],
            )
            lines.append(item)
        doc["line_items"] = lines
        doc["shipping_lines"] = [{**doc["shipping_lines"][0], "price": amount(order.shipping_minor)}]
        address = {
            "first_name": order.first_name,
            "last_name": order.last_name,
            "address1": order.street,
            "address2": "",
            "city": order.place.city,
            "zip": order.postcode,
            "province": order.place.region,
            "province_code": None,
            "country": _COUNTRY[market],
            "country_code": market.value,
            "phone": "+" + order.phone,
        }
        doc["shipping_address"] = {**address, "latitude": order.place.lat, "longitude": order.place.lon}
        doc["billing_address"] = address
        doc["customer"] = {
            "id": 7_350_121_300_000 + order.serial,
            "email": email,
            "first_name": order.first_name,
            "last_name": order.last_name,
        }
        return orjson.dumps(doc), None

    def _grab_body(self, order: _Order, status: str, at_s: int) -> tuple[bytes, str | None]:
        doc = self._template("grab")
        currency = order.currency
        exponent = 0 if currency == "VND" else 2  # Grab scales IDR by 100 too

        def scaled(minor: int) -> int:
            return minor * int(10 ** (exponent - CURRENCY_EXPONENT[currency]))

        subtotal = scaled(order.items_minor)
        delivery = scaled(order.shipping_minor)
        item_template = doc["items"][1]
        items = []
        for i, line in enumerate(order.lines):
            item = dict(item_template)
            item.update(
                id=line.sku.code,
                grabItemID=f"{order.market.value}ITE{order.serial:08d}{i:03d}",
                quantity=line.quantity,
                price=scaled(line.paid_minor),
            )
            items.append(item)
        doc.update(
            orderID=order.order_id,
            shortOrderNumber=f"GF-{order.serial % 1000}",
            merchantID=order.shop,
            partnerMerchantID=f"store-{order.market.value.lower()}-{order.shop[-4:].lower()}",
            paymentType=order.payment,
            orderTime=_utc_z(order.created_s),
            submitTime=_utc_z(order.created_s + 4),
            currency={"code": currency, "symbol": _GRAB_SYMBOL[currency], "exponent": exponent},
            items=items,
        )
        doc["price"] = {
            **doc["price"],
            "subtotal": subtotal,
            "deliveryFee": delivery,
            "eaterPayment": subtotal + delivery if order.payment == "CASH" else 0,
        }
        doc["receiver"] = {
            "name": f"{order.first_name} {order.last_name}",
            "phones": order.phone,
            "address": {
                **doc["receiver"]["address"],
                "unitNumber": "",
                "address": f"{order.street}, {order.place.city} {order.postcode}",
                "postcode": order.postcode,
                "coordinates": {"latitude": order.place.lat, "longitude": order.place.lon},
            },
        }
        doc["orderReadyEstimation"] = {
            **doc["orderReadyEstimation"],
            "estimatedOrderReadyTime": _utc_z(order.created_s + 15 * 60),
            "maxOrderReadyTime": _utc_z(order.created_s + 30 * 60),
        }
        return orjson.dumps(doc), None

    def _grab_push(self, order: _Order, status: str, at_s: int) -> list[tuple[bytes, str | None]]:
        push = {
            "merchantID": order.shop,
            "partnerMerchantID": f"store-{order.market.value.lower()}-{order.shop[-4:].lower()}",
            "orderID": order.order_id,
            "state": _STATUS_NAMES["grab"][status],
            "driverETA": 0 if status != "shipped" else self.rng.randint(300, 1500),
            "code": "",
            "message": "",
            "updatedAt": _utc_z(at_s),
        }
        return [(orjson.dumps(push), None)]

    def _pos_body(self, order: _Order, status: str, at_s: int) -> tuple[bytes, str | None]:
        doc = self._template("pos")
        currency = order.currency
        counter = order.source == "pos"
        doc.update(
            order_id=order.order_id,
            market=order.market.value,
            currency=currency,
            store_id=order.shop,
            source=order.source,
            status=status,
            payment_method=order.payment,
            created_at=_iso(order.created_s, order.market),
            updated_at=_iso(at_s, order.market),
            lines=[
                {
                    "sku": line.sku.code,
                    "quantity": line.quantity,
                    "unit_price": _text(line.unit_minor, currency),
                    "paid_price": _text(line.paid_minor, currency),
                    "promotion_type": line.promotion or None,
                }
                for line in order.lines
            ],
            shipping_fee=_text(order.shipping_minor, currency),
            total=_text(order.items_minor + order.shipping_minor, currency),
            shipping=None
            if counter
            else {"postcode": order.postcode, "region": order.place.region, "city": order.place.city},
        )
        return orjson.dumps(doc), None

    def _hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"


_POS_SOURCES = ("pos", "pos", "pos", "facebook", "instagram", "whatsapp", "manual")


# -------------------------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class WebhookSecrets:
    """What each platform signs with (the same values the webhook service verifies with)."""

    shopee_partner_key: str = ""
    lazada_app_key: str = ""
    lazada_app_secret: str = ""
    tiktok_app_key: str = ""
    tiktok_app_secret: str = ""
    shopify: str = ""
    tokopedia: str = ""
    grab: str = ""
    pos: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSecrets:
        return cls(
            shopee_partner_key=settings.shopee_partner_key.get_secret_value(),
            lazada_app_key=settings.lazada_app_key,
            lazada_app_secret=settings.lazada_app_secret.get_secret_value(),
            tiktok_app_key=settings.tiktok_app_key,
            tiktok_app_secret=settings.tiktok_app_secret.get_secret_value(),
            shopify=settings.shopify_webhook_secret.get_secret_value(),
            tokopedia=settings.tokopedia_webhook_secret.get_secret_value(),
            grab=settings.grab_webhook_secret.get_secret_value(),
            pos=settings.pos_webhook_secret.get_secret_value(),
        )

    def missing(self, channels: Sequence[str]) -> list[str]:
        """The OMS_ variables that must be set to sign deliveries on ``channels``."""
        need = {
            "shopee": (("shopee_partner_key", "OMS_SHOPEE_PARTNER_KEY"),),
            "lazada": (("lazada_app_key", "OMS_LAZADA_APP_KEY"), ("lazada_app_secret", "OMS_LAZADA_APP_SECRET")),
            "tiktok": (("tiktok_app_key", "OMS_TIKTOK_APP_KEY"), ("tiktok_app_secret", "OMS_TIKTOK_APP_SECRET")),
            "shopify": (("shopify", "OMS_SHOPIFY_WEBHOOK_SECRET"),),
            "tokopedia": (("tokopedia", "OMS_TOKOPEDIA_WEBHOOK_SECRET"),),
            "grab": (("grab", "OMS_GRAB_WEBHOOK_SECRET"),),
            "pos": (("pos", "OMS_POS_WEBHOOK_SECRET"),),
        }
        return [variable for c in channels for attr, variable in need[c] if not getattr(self, attr)]


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(event: SimEvent, url: str, secrets: WebhookSecrets) -> dict[str, str]:
    """The headers a platform sends with ``event`` to ``url``, signed by its scheme (connectors.signatures)."""
    headers = {"Content-Type": "application/json"}
    body, channel = event.body, event.channel
    if channel == "shopee":
        headers["Authorization"] = _hmac_hex(secrets.shopee_partner_key, url.encode() + b"|" + body)
    elif channel == "lazada":
        headers["Authorization"] = _hmac_hex(secrets.lazada_app_secret, secrets.lazada_app_key.encode() + body)
    elif channel == "tiktok":
        headers["Authorization"] = _hmac_hex(secrets.tiktok_app_secret, secrets.tiktok_app_key.encode() + body)
    elif channel == "shopify":
        digest = hmac.new(secrets.shopify.encode(), body, hashlib.sha256).digest()
        headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(digest).decode()
        headers["X-Shopify-Webhook-Id"] = event.delivery_id
        headers["X-Shopify-Event-Id"] = event.delivery_id
        headers["X-Shopify-Shop-Domain"] = event.shop
        headers["X-Shopify-Topic"] = "orders/create" if event.revision == 0 else "orders/updated"
        headers["X-Shopify-API-Version"] = "2025-10"
    else:
        secret = {"tokopedia": secrets.tokopedia, "grab": secrets.grab, "pos": secrets.pos}[channel]
        headers["X-OMS-Signature"] = _hmac_hex(secret, body)
        headers["X-OMS-Delivery-Id"] = event.delivery_id
        headers["X-OMS-Shop"] = event.shop
    return headers


@dataclass
class RunSummary:
    """What a run sent, per channel and kind, how fast, and what came back."""

    target: str
    rate: float
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    first_error: str = ""

    @property
    def sent(self) -> int:
        return sum(self.counts.values())

    @property
    def errors(self) -> int:
        return sum(
            n for outcome, n in self.outcomes.items() if outcome not in ("acknowledged", "accepted", "duplicate")
        )

    def add(self, event: SimEvent) -> None:
        self.counts[(event.channel, event.kind)] += 1

    def render(self) -> str:
        achieved = self.sent / self.seconds if self.seconds > 0 else float("inf")
        target = f"{self.rate:g}/s" if self.rate > 0 else "unpaced"
        timing = f" in {self.seconds:.2f} s: {achieved:.1f} events/s (target {target})" if self.seconds > 0 else ""
        lines = [
            f"{self.sent} events to {self.target}{timing}",
            f"{'channel':<11}" + "".join(f"{kind:>11}" for kind in KINDS) + f"{'total':>9}",
        ]
        channels = sorted({channel for channel, _ in self.counts}, key=lambda c: CHANNELS.index(c))
        for channel in [*channels, "total"]:
            row = [
                sum(n for (c, k), n in self.counts.items() if k == kind and channel in (c, "total")) for kind in KINDS
            ]
            lines.append(f"{channel:<11}" + "".join(f"{n:>11}" for n in row) + f"{sum(row):>9}")
        if self.outcomes:
            lines.append("outcomes   " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())))
        if self.first_error:
            lines.append(f"first error: {self.first_error}")
        return "\n".join(lines)


def _wait(began: float, i: int, rate: float) -> float:
    """Seconds until event ``i`` is due at ``rate`` events/s (pacing a load generator, not a test)."""
    return began + i / rate - time.monotonic() if rate > 0 else 0.0


def run_to_kafka(
    settings: Settings,
    simulator: Simulator,
    count: int,
    rate: float,
    *,
    on_ack: Callable[[SimEvent, str, int, int], None] | None = None,
) -> RunSummary:
    """Produce ``count`` events to raw.orders.<channel> through RawProducer at ``rate`` events/s (0: unpaced).

    ``on_ack(event, topic, partition, offset)`` is called for each record Kafka acknowledged.
    """
    producer = RawProducer(settings)
    summary = RunSummary(target="kafka", rate=rate)

    def acked(event: SimEvent) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                summary.outcomes["error"] += 1
                summary.first_error = summary.first_error or f"{msg.topic()}: {err}"
                return
            summary.outcomes["acknowledged"] += 1
            if on_ack is not None:
                on_ack(event, msg.topic() or "", msg.partition() or 0, msg.offset() or 0)

        return on_delivery

    began = time.monotonic()
    for i, event in enumerate(simulator.events(count)):
        while (ahead := _wait(began, i, rate)) > 0:
            producer.poll(min(ahead, 0.1))  # serve acknowledgements while waiting for the next slot
        while True:
            try:
                producer.send(
                    event.channel, event.body, shop=event.shop, delivery_id=event.delivery_id, on_delivery=acked(event)
                )
                break
            except BufferError:  # librdkafka's queue is full: let it drain
                producer.poll(0.05)
        summary.add(event)
    producer.flush(60)
    summary.seconds = time.monotonic() - began
    return summary


def run_to_webhooks(
    settings: Settings,
    simulator: Simulator,
    count: int,
    rate: float,
    url: str,
    secrets: WebhookSecrets,
    *,
    concurrency: int = 8,
) -> RunSummary:
    """POST ``count`` signed deliveries to ``url``/webhooks/<channel> (``oms connectors serve``).

    Deliveries of one order go through the same client, in order; ``concurrency`` clients in all.
    Shopee signs the URL: the service's OMS_WEBHOOK_PUBLIC_URL when set, else ``url``.
    """
    missing = secrets.missing(simulator.channels)
    if missing:
        raise SimulatorError(f"set {', '.join(missing)} to sign deliveries (the service needs the same values)")
    if concurrency < 1:
        raise SimulatorError(f"concurrency must be at least 1, got {concurrency}")
    return asyncio.run(_post_all(settings, simulator, count, rate, url.rstrip("/"), secrets, concurrency))


async def _post_all(
    settings: Settings,
    simulator: Simulator,
    count: int,
    rate: float,
    base: str,
    secrets: WebhookSecrets,
    concurrency: int,
) -> RunSummary:
    import aiohttp

    summary = RunSummary(target=f"webhooks at {base}", rate=rate)
    signing_base = settings.webhook_public_url.rstrip("/") or base
    queues: list[asyncio.Queue[SimEvent | None]] = [asyncio.Queue(maxsize=64) for _ in range(concurrency)]
    unreachable: list[str] = []

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def client(queue: asyncio.Queue[SimEvent | None]) -> None:
            while (event := await queue.get()) is not None:
                path = f"/webhooks/{event.channel}"
                headers = signed_headers(event, signing_base + path, secrets)
                try:
                    async with session.post(base + path, data=event.body, headers=headers) as resp:
                        answer = await resp.read()
                        if resp.status == 200:
                            status = orjson.loads(answer).get("status", "?")
                            summary.outcomes[str(status)] += 1
                            continue
                        summary.outcomes[f"http {resp.status}"] += 1
                        summary.first_error = (
                            summary.first_error or f"{resp.status} {answer[:300].decode('utf-8', 'replace')}"
                        )
                except aiohttp.ClientConnectorError as exc:
                    unreachable.append(str(exc))
                    summary.outcomes["unreachable"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    summary.outcomes["error"] += 1
                    summary.first_error = summary.first_error or f"{type(exc).__name__}: {exc}"

        clients = [asyncio.create_task(client(queue)) for queue in queues]
        began = time.monotonic()
        for i, event in enumerate(simulator.events(count)):
            if unreachable:
                break
            ahead = _wait(began, i, rate)
            if ahead > 0:
                await asyncio.sleep(ahead)
            summary.add(event)
            shard = zlib.crc32((event.order_id or event.delivery_id).encode()) % concurrency
            await queues[shard].put(event)
        for queue in queues:
            await queue.put(None)
        await asyncio.gather(*clients)
        summary.seconds = time.monotonic() - began
    if unreachable:
        raise SimulatorError(f"cannot reach {base} ({unreachable[0]}); is `oms connectors serve` running there?")
    return summary
