"""Run ``abaxus serve`` as a real child process on a free port (for crash and benchmark runs)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, data_dir: Path, key: str, port: int | None = None, extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.data_dir, self.key = data_dir, key
        self.port = port or free_port()
        self.args = args
        # The usage front (a ClickHouse HTTP port) stays off unless a test asks for it: tests run many servers.
        self.env = {**os.environ, "ABAXUS_DATA_DIR": str(data_dir), "ABAXUS_BOOTSTRAP_KEY": key,
                    "ABAXUS_PORT": str(self.port), "ABAXUS_LOG_FORMAT": "json", "ABAXUS_RATE_LIMIT_RPM": "1000000",
                    "ABAXUS_USAGE_PORT": "off", **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        log = (self.data_dir.parent / f"server-{self.port}.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "abaxus.cli", "serve", *self.args], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)
