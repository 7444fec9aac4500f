"""The one ClickHouse client factory: a server over HTTP when OMS_CLICKHOUSE_URL is set, else embedded chDB.

The rest of the code only sees a clickhouse-connect ``Client``. chDB runs the real ClickHouse engine
inside this process; one process may own a chDB directory at a time, so we take an exclusive lock on
it and tell the second process who owns it instead of letting the engine fail obscurely.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from infra.process import ServiceError
from oms.settings import Settings

_held: dict[Path, IO[str]] = {}


def chdb_path(settings: Settings) -> Path:
    return settings.data_path / "clickhouse"


def _lock_file(path: Path) -> Path:
    return path.parent / (path.name + ".owner")


def chdb_owner(settings: Settings) -> int | None:
    """PID of the process that owns the embedded ClickHouse directory, or None when free."""
    path = chdb_path(settings)
    if path in _held:
        return os.getpid()
    lock = _lock_file(path)
    if not lock.exists():
        return None
    with lock.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _own(path: Path) -> None:
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = _lock_file(path).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise ServiceError(
            f"the embedded ClickHouse at {path} is owned by process {owner} (the sink or the demo). "
            "Only one process may open it: stop that process, or query through it."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _held[path] = handle


def get_client(settings: Settings, database: str | None = None, **kwargs: Any) -> Client:
    """A client on ``database`` (default OMS_CLICKHOUSE_DATABASE), created if missing."""
    db = database or settings.clickhouse_database
    if settings.clickhouse_embedded:
        path = chdb_path(settings)
        _own(path)
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}", **kwargs)
    else:
        url = urlsplit(settings.clickhouse_url)
        client = clickhouse_connect.get_client(
            host=url.hostname or "127.0.0.1",
            port=url.port or (8443 if url.scheme == "https" else 8123),
            secure=url.scheme == "https",
            username=settings.clickhouse_user,
            password=settings.clickhouse_password.get_secret_value(),
            **kwargs,
        )
    client.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    client.database = db
    return client


def version(client: Client) -> str:
    return str(client.command("SELECT version()"))
