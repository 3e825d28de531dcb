"""Apache Kafka, one broker in KRaft mode, from Maven Central jars."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from kafka import KafkaAdminClient

from mimamori.stack.install import maven_dependencies, require_tool
from mimamori.stack.process import ManagedProcess, StackError, port_in_use
from mimamori.stack.service import Health, Service

POM = Path(__file__).parent / "kafka-broker.pom.xml"

LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
"""


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, 22 characters, as Kafka's ``Uuid.randomUuid``
    makes them, and like it never starting with "-" (the storage tool would read one as an option:
    one id in 64 did, and failed a stack's first start)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class KafkaService(Service):
    name = "kafka"

    @property
    def broker_address(self) -> tuple[str, int]:
        return _host_port(self.settings.kafka.bootstrap_servers.split(",")[0])

    @property
    def libs(self) -> Path:
        return self.settings.stack.cache_dir / f"kafka-{self.settings.stack.kafka.version}" / "libs"

    def ports(self) -> dict[str, int]:
        return {"broker": self.broker_address[1], "controller": self.settings.stack.kafka.controller_port}

    def processes(self) -> list[ManagedProcess]:
        return [self.process("kafka")]

    def install(self) -> None:
        self.libs.parent.mkdir(parents=True, exist_ok=True)
        maven_dependencies(POM, self.libs, {"kafka.version": self.settings.stack.kafka.version})

    def _server_properties(self) -> Path:
        host, port = self.broker_address
        if host not in ("127.0.0.1", "localhost"):
            raise StackError(f"the local stack serves Kafka on loopback only, not {host}")
        controller = self.settings.stack.kafka.controller_port
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created by `stack up` from configuration, never implicitly by a typo.
            "auto.create.topics.enable": "false",
            "message.max.bytes": str(2 * 1024 * 1024),
        }
        path = self.home / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        (self.home / "log4j.properties").write_text(LOG4J)
        return path

    def _format_storage_once(self, java: str, properties: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id_file = self.home / "cluster.id"
        cluster_id = cluster_id_file.read_text().strip() if cluster_id_file.exists() else ""
        if not cluster_id or cluster_id.startswith("-"):  # an earlier version's could start with "-"
            cluster_id = new_cluster_id()
            cluster_id_file.write_text(cluster_id)
        import subprocess

        result = subprocess.run(
            [java, "-cp", f"{self.libs}/*", f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
             "kafka.tools.StorageTool", "format", "--ignore-formatted",
             "-t", cluster_id, "-c", str(properties)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def _launch(self) -> None:
        java = require_tool("java", "run the Kafka broker (Java 17 or newer)")
        properties = self._server_properties()
        self._format_storage_once(java, properties)
        heap = self.settings.stack.kafka.heap
        # AlwaysPreTouch: the fixed heap is resident from the start. Without it the broker's RSS
        # climbs for an hour or more as G1 first touches regions of a heap it already holds
        # (bench/soak.py: +8 MiB a minute, bounded by -Xmx), which hides a real leak in a soak.
        self.processes()[0].start(
            [java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:+AlwaysPreTouch", "-Djava.awt.headless=true",
             f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
             f"-Dkafka.logs.dir={self.settings.stack.home / 'logs'}",
             "-cp", f"{self.libs}/*", "kafka.Kafka", str(properties)],
            cwd=self.home,
        )

    def health(self) -> Health:
        host, port = self.broker_address
        if not port_in_use(host, port):  # fast, and keeps kafka-python from retrying with backoff
            return Health(False, f"nothing listens on {host}:{port}")
        try:
            admin = KafkaAdminClient(**self.settings.kafka.client_options(), request_timeout_ms=3000,
                                     client_id="mimamori-health")
        except Exception as error:
            return Health(False, f"no broker: {error}")
        try:
            topics = admin.list_topics()
            return Health(True, f"broker {self.settings.kafka.bootstrap_servers}, {len(topics)} topics")
        except Exception as error:
            return Health(False, str(error))
        finally:
            admin.close()
