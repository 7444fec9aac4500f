"""Apache Kafka, one KRaft node, assembled from Maven Central jars and run from the data directory."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from infra.process import ManagedProcess, ServiceError, wait_until
from oms.settings import Settings

log = logging.getLogger(__name__)


def _home(settings: Settings) -> Path:
    return settings.data_path / "kafka"


def libs_dir(settings: Settings) -> Path:
    return _home(settings) / f"kafka-{settings.kafka_version}" / "libs"


def process(settings: Settings) -> ManagedProcess:
    home = _home(settings)
    return ManagedProcess("kafka", home / "kafka.pid", home / "logs" / "server.out")


def is_installed(settings: Settings) -> bool:
    return (libs_dir(settings) / ".complete").exists()


def install(settings: Settings) -> None:
    """Fetch the broker jars with Maven (about a minute the first time; cached in ~/.m2 after)."""
    if is_installed(settings):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError(
            "Maven (mvn) is needed to fetch the Kafka jars from Maven Central and is not on PATH. "
            "Install it (apt-get install -y maven) or set OMS_KAFKA_BOOTSTRAP to an existing cluster."
        )
    libs = libs_dir(settings)
    libs.mkdir(parents=True, exist_ok=True)
    pom = resources.files("infra").joinpath("kafka", "pom.xml")
    with resources.as_file(pom) as pom_path:
        cmd = [
            mvn, "-q", "-B", "-f", str(pom_path), f"-Dkafka.version={settings.kafka_version}",
            "dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
        ]  # fmt: skip
        log.info("fetching Kafka %s jars with Maven into %s", settings.kafka_version, libs)
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(libs.glob(f"kafka_2.13-{settings.kafka_version}.jar")):
        raise ServiceError(
            f"Maven could not fetch Apache Kafka {settings.kafka_version} "
            f"(OMS_KAFKA_VERSION). Output:\n{(result.stdout + result.stderr)[-2000:]}\n"
            "Check that Maven Central is reachable and the version exists."
        )
    (libs / ".complete").write_text(settings.kafka_version)


def _java_cmd(settings: Settings) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("Java 17+ is needed to run Kafka and is not on PATH (apt-get install -y openjdk-17-jre).")
    home = _home(settings)
    log4j = resources.files("infra").joinpath("kafka", "log4j2.properties")
    return [
        java, f"-Xms{min(256, settings.kafka_heap_mb)}m", f"-Xmx{settings.kafka_heap_mb}m",
        "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={home / 'logs'}",
        "-cp", f"{libs_dir(settings)}/*",
    ]  # fmt: skip


def _write_config(settings: Settings) -> Path:
    home = _home(settings)
    template = resources.files("infra").joinpath("kafka", "server.properties").read_text()
    config = template.format(
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
        log_dirs=home / "data",
    )
    path = home / "server.properties"
    path.write_text(config)
    return path


def _format_storage(settings: Settings, config: Path) -> None:
    if (_home(settings) / "data" / "meta.properties").exists():
        return
    java = _java_cmd(settings)
    cluster_id = subprocess.run(
        [*java, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def broker_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when a broker returns cluster metadata (not merely an open port)."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    if not port_open(host.strip("[]"), int(port)):
        return False
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet}
    admin = AdminClient(config)
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return False


_quiet = logging.getLogger("oms.kafka.admin")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def start(settings: Settings, timeout: float = 90.0) -> str:
    """Start the local broker unless one answers already. Returns what happened, for the CLI."""
    if broker_answers(settings.kafka_bootstrap):
        pid = process(settings).pid()
        return f"already running (pid {pid})" if pid else "already running (not started by oms)"
    if port_open("127.0.0.1", settings.kafka_port) or port_open("127.0.0.1", settings.kafka_controller_port):
        raise ServiceError(
            f"port {settings.kafka_port} or {settings.kafka_controller_port} is in use by something that "
            "is not a Kafka broker. Stop it, or set OMS_KAFKA_BOOTSTRAP / OMS_KAFKA_CONTROLLER_PORT."
        )
    install(settings)
    config = _write_config(settings)
    _format_storage(settings, config)
    proc = process(settings)
    started = time.monotonic()
    proc.start([*_java_cmd(settings), "kafka.Kafka", str(config)], env=dict(os.environ))
    if not wait_until(lambda: proc.pid() is None or broker_answers(settings.kafka_bootstrap), timeout, 0.3):
        proc.stop()
        raise ServiceError(f"Kafka did not answer within {timeout:.0f}s. Last log lines:\n{proc.log_tail()}")
    if proc.pid() is None:
        raise ServiceError(f"Kafka exited during start-up. Last log lines:\n{proc.log_tail()}")
    return f"started (pid {proc.pid()}) in {time.monotonic() - started:.1f}s"
