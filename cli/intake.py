"""Intake processes of an embedded ``abaxus serve`` (``ABAXUS_INTAKE_PROCESSES``): start, watch, stop.

Every intake process binds the server's port with ``SO_REUSEPORT``, so the kernel spreads
connections over them. With one intake process the owner answers on the port too; from two on
it only reserves the port (bound, not listening) and serves its own API on a unix socket in
the data directory, leaving its GIL to the dataflow. The owner (the process that owns chDB) starts
the intake processes once its usage front answers, restarts one that dies (its acknowledged
events are safe in its log partition, which the owner keeps reading), and stops them when
it stops. An intake process also dies with its owner (``PR_SET_PDEATHSIG``): a killed owner
never leaves processes answering on its port with nobody storing what they accept.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from abaxus.logging import get_logger
from abaxus.settings import Settings

__all__ = ["IntakeProcesses", "die_with_parent", "owner_socket", "reserve_port", "shared_socket", "usage_password"]

log = get_logger("abaxus.intake_processes")

_PR_SET_PDEATHSIG = 1
_MAX_UNIX_PATH = 107  # sun_path holds 108 bytes, the last a NUL
_RESTART_FIRST_S, _RESTART_MAX_S = 0.5, 10.0


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other processes may bind too (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` as the intake processes will (``SO_REUSEPORT``), without listening.

    A socket that does not listen takes no connections, so the kernel gives them all to the
    intake processes; binding it still fails at once (``EADDRINUSE``) when another program
    holds the port, and keeps such a program from taking it while an intake process restarts.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(False)
    return sock


def owner_socket(data_dir: Path) -> tuple[socket.socket, Path]:
    """The owner's private listening socket: ``<data dir>/owner.sock``, mode 0600.

    A unix socket path is limited to 107 bytes; a longer one moves to the temporary directory
    under a name made from the data directory. A stale file of an earlier run is replaced.
    """
    path = (data_dir / "owner.sock").resolve()
    if len(os.fsencode(path)) > _MAX_UNIX_PATH:
        digest = hashlib.sha256(os.fsencode(data_dir.resolve())).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"abaxus-owner-{digest}.sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_mask)
    sock.listen(256)
    sock.set_inheritable(False)
    return sock, path


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent (the owner) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the owner's stop still ends us
        return
    if os.getppid() == 1:  # the owner died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def usage_password(settings: Settings) -> str:
    """The usage front's password the intake processes use (one made up for this run if unset)."""
    return settings.usage_password or secrets.token_urlsafe(24)


class IntakeProcesses:
    """``count`` intake processes (partitions 1..count), restarted with backoff while the owner runs."""

    def __init__(self, settings: Settings, count: int, password: str) -> None:
        self.settings = settings
        self.count = count
        host = "127.0.0.1" if settings.usage_host in ("0.0.0.0", "::") else settings.usage_host
        self.env = {**os.environ,
                    "ABAXUS_INTAKE_PROCESSES": str(count),
                    "ABAXUS_DATA_DIR": str(settings.data_dir),
                    "ABAXUS_DATABASE_URL": settings.resolved_database_url,
                    # a ClickHouse server directly, else the owner's front on its chDB
                    "ABAXUS_CLICKHOUSE_URL": settings.clickhouse_url
                    or f"http://abaxus:{password}@{host}:{settings.usage_port}",
                    "ABAXUS_USAGE_PORT": "off",
                    "ABAXUS_HOST": settings.host,
                    "ABAXUS_PORT": str(settings.port)}
        self.env.pop("ABAXUS_USAGE_PASSWORD", None)
        self.env.pop("ABAXUS_BOOTSTRAP_KEY", None)  # the owner made it; a second one would race
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="abaxus-intake-watch", daemon=True)

    def start(self) -> None:
        for partition in range(1, self.count + 1):
            self._spawn(partition)
        self._watcher.start()
        log.info("intake_processes_started", count=self.count, pids=[p.pid for p in self._procs.values()])

    def _spawn(self, partition: int) -> None:
        self._procs[partition] = subprocess.Popen(
            [sys.executable, "-m", "abaxus.cli", "serve", "--role", "intake"],
            env={**self.env, "ABAXUS_INTAKE_PARTITION": str(partition)}, stdin=subprocess.DEVNULL)

    def _watch(self) -> None:
        delay = dict.fromkeys(self._procs, _RESTART_FIRST_S)
        while not self._stop.wait(0.5):
            for partition, proc in list(self._procs.items()):
                if proc.poll() is None:
                    continue
                log.error("intake_process_exited", partition=partition, code=proc.returncode, restart_in_s=delay[partition])
                if self._stop.wait(delay[partition]):
                    return
                delay[partition] = min(delay[partition] * 2, _RESTART_MAX_S)
                self._spawn(partition)

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.poll() is None]

    def shutdown(self) -> None:
        """``stop`` with its default wait (a Litestar shutdown hook takes no arguments)."""
        self.stop()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every intake process (each finishes its requests and closes its log), then wait."""
        self._stop.set()
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self._procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
