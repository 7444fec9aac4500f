"""redis-server from Debian's packages, run on 127.0.0.1 without persistence (it is a read model)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from infra.process import ManagedProcess, ServiceError, wait_until
from oms.settings import Settings


def process(settings: Settings) -> ManagedProcess:
    home = settings.data_path / "redis"
    return ManagedProcess("redis", home / "redis.pid", home / "redis.log")


def install() -> str:
    """Path of redis-server, installing Debian's package when it is missing and we may."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(
            "redis-server is not installed. Install it (sudo apt-get install -y redis-server) "
            "or set OMS_REDIS_URL to an existing Redis."
        )
    # Debian's postinst would start a system redis on 6379; a policy-rc.d that says 101 stops that so
    # the only redis here is the one we start (and stop) ourselves.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with tempfile.TemporaryFile() as out:
            update = subprocess.run(["apt-get", "update"], stdout=out, stderr=out, env=env, check=False)
            result = subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"],
                stdout=out, stderr=out, env=env, check=False,
            )  # fmt: skip
            out.seek(0)
            text = out.read().decode(errors="replace")
    finally:
        if ours:
            policy.unlink(missing_ok=True)
    found = shutil.which("redis-server")
    if result.returncode != 0 or found is None:
        raise ServiceError(
            f"apt-get could not install redis-server (update exit {update.returncode}, "
            f"install exit {result.returncode}):\n{text[-2000:]}"
        )
    return found


def answers(url: str) -> str | None:
    """Server version when Redis answers PING, else None."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            client.ping()
            info = client.info("server")
            return str(info.get("redis_version", "?"))
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return None


def start(settings: Settings, timeout: float = 20.0) -> str:
    if answers(settings.redis_url):
        pid = process(settings).pid()
        return f"already running (pid {pid})" if pid else "already running (not started by oms)"
    binary = install()
    proc = process(settings)
    home = proc.pid_file.parent
    home.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(settings.redis_port), "--dir", str(home)]
    # a read model: no snapshots, no AOF; losing it loses nothing (rebuilt from Kafka)
    argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]
    proc.start(argv)
    if not wait_until(lambda: proc.pid() is None or answers(settings.redis_url) is not None, timeout):
        proc.stop()
        raise ServiceError(f"Redis did not answer within {timeout:.0f}s:\n{proc.log_tail()}")
    if proc.pid() is None:
        raise ServiceError(f"redis-server exited during start-up:\n{proc.log_tail()}")
    return f"started (pid {proc.pid()}) in {time.monotonic() - began:.1f}s"
