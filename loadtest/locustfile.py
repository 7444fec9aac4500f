"""Load tests of the order pipeline with locust: pick the users on the command line, the shape by OMS_LOAD_SHAPE.

Users (loadtest/users.py, knobs there): ``KafkaOrderUser`` produces the simulator's raw orders straight to
``raw.orders.<channel>`` (the connector path); ``WebhookOrderUser`` POSTs them, signed, to the webhook
service (``oms connectors serve``). Name one on the command line; without a name locust runs both.

Shape (loadtest/shapes.py, profiles in loadtest/profile.py): ``OMS_LOAD_SHAPE`` = ``ramp``, ``spike`` (the
11.11 midnight spike) or ``plateau``, with ``OMS_LOAD_USERS`` peak users (default 20) over
``OMS_LOAD_SECONDS`` (default 60); locust then ignores ``-u``, ``-r`` and ``-t``. Unset or ``none`` (the
default): no shape, and ``-u``/``-r``/``-t`` drive the run.

Examples, from the repository root with ``oms up`` running (OMS_* settings as for the pipeline)::

    # 8 users x 50 records/s to Kafka for 30 s, per-record produce -> ack latency
    locust -f loadtest/locustfile.py KafkaOrderUser --headless -u 8 -r 8 -t 30s --only-summary

    # the 11.11 midnight spike to Kafka: 4 users, 40 for the middle 40 s, back to 4; 200 records/s per user
    OMS_LOAD_SHAPE=spike OMS_LOAD_USERS=40 OMS_LOAD_SECONDS=120 OMS_LOAD_USER_RATE=200 \\
        locust -f loadtest/locustfile.py KafkaOrderUser --headless --csv results/spike

    # signed webhooks to `oms connectors serve` on :8080 (the service and locust share the secrets)
    OMS_SHOPEE_PARTNER_KEY=... OMS_LAZADA_APP_KEY=... OMS_LAZADA_APP_SECRET=... (and the other channels') \\
        locust -f loadtest/locustfile.py WebhookOrderUser --headless -u 16 -r 16 -t 60s --host http://127.0.0.1:8080
"""

from __future__ import annotations

from loadtest.profile import shape_from_env
from loadtest.shapes import SHAPE_CLASSES
from loadtest.users import KafkaOrderUser, WebhookOrderUser

__all__ = ["KafkaOrderUser", "WebhookOrderUser"]

_shape = shape_from_env()
if _shape is not None:
    # locust runs the one LoadTestShape class it finds in the locustfile's namespace: only the chosen one.
    LoadShape = SHAPE_CLASSES[_shape]
    __all__ += ["LoadShape"]
