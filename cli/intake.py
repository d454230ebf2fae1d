"""Intake processes of an embedded ``abaxus serve`` (``ABAXUS_INTAKE_PROCESSES``): start, watch, stop.

The server opens the listening socket and every intake process inherits it, so they all
accept from one queue (an idle process takes the next connection). With one intake process
the owner accepts too; from two on it only holds the socket and serves its own API on a unix
socket in the data directory, leaving its GIL to the dataflow. The owner (the process that owns chDB) starts
the intake processes once its usage front answers, restarts one that dies (its acknowledged
events are safe in its log partition, which the owner keeps reading), and stops them when
it stops. An intake process also dies with its owner (``PR_SET_PDEATHSIG``): a killed owner
never leaves processes answering on its port with nobody storing what they accept.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
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
from typing import Any

from abaxus.logging import get_logger
from abaxus.pipeline.shared_map import map_file
from abaxus.settings import Settings

__all__ = ["ConnectionCounts", "IntakeProcesses", "SharedListener", "die_with_parent", "listening_socket", "owner_socket",
           "usage_password"]

log = get_logger("abaxus.intake_processes")

_PR_SET_PDEATHSIG = 1
_MAX_UNIX_PATH = 107  # sun_path holds 108 bytes, the last a NUL
_RESTART_FIRST_S, _RESTART_MAX_S = 0.5, 10.0
_DECLINE_S = 0.005  # how long a busier process leaves a waiting connection to the others


class ConnectionCounts:
    """How many connections each accepting process holds: one int64 per process in a shared file.

    Each process writes only its own slot (from its event loop), so no lock is needed; a
    killed process's stale slot is reset when its successor starts.
    """

    def __init__(self, path: Path, slots: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._map = map_file(path, 8 * slots, 0o600)
        self.slots = memoryview(self._map).cast("q")

    def add(self, slot: int, delta: int) -> None:
        self.slots[slot] = max(0, self.slots[slot] + delta)


class _CountedConnection(socket.socket):
    """An accepted connection that gives its slot back when closed (asyncio closes it once done)."""

    counts: ConnectionCounts | None = None
    slot = 0

    def close(self) -> None:
        counts, self.counts = self.counts, None
        if counts is not None:
            counts.add(self.slot, -1)
        super().close()


class SharedListener(socket.socket):
    """The server's listening socket, as each process that accepts from it hands it to uvicorn.

    Every accepting process takes connections from this one queue, fewest connections first:
    ``accept`` declines (``BlockingIOError``, which asyncio reads as "none waiting") while this
    process holds more than another one, for at most ``_DECLINE_S`` (that process may be busy
    or dead). Without it, the process already running won the race for every connection of a
    burst and two long-lived client connections shared one process, leaving a core idle.
    uvicorn is given ``backlog=1`` (see ``serve_on``): asyncio accepts up to ``backlog``
    connections per wake-up and calls ``listen(backlog)`` on the socket, which is a no-op here
    (the queue keeps the length the server opened it with).
    """

    counts: ConnectionCounts | None = None
    slot = 0
    peers: tuple[int, ...] = ()
    _declining_since = 0.0

    def balance(self, counts: ConnectionCounts, slot: int, peers: tuple[int, ...]) -> None:
        """Take part in fewest-connections-first among ``peers`` (slots of the other accepting processes)."""
        self.counts, self.slot, self.peers = counts, slot, peers
        counts.slots[slot] = 0  # a predecessor killed with connections open left its count behind

    def listen(self, backlog: int = 0) -> None:  # already listening, with the server's queue length
        return

    def accept(self) -> tuple[socket.socket, Any]:
        counts = self.counts
        if counts is not None and self.peers:
            mine = counts.slots[self.slot]
            if mine > min(counts.slots[p] for p in self.peers):
                now = time.monotonic()
                if not self._declining_since:
                    self._declining_since = now
                if now - self._declining_since < _DECLINE_S:
                    raise BlockingIOError(errno.EAGAIN, "another process holds fewer connections")
        self._declining_since = 0.0
        fd, address = self._accept()  # type: ignore[attr-defined]  # socket.socket's own primitive
        conn = _CountedConnection(self.family, self.type, self.proto, fileno=fd)
        if counts is not None:
            conn.counts, conn.slot = counts, self.slot
            counts.add(self.slot, 1)
        return conn, address


def listening_socket(host: str, port: int) -> SharedListener:
    """The server's listening socket on ``host:port``; its intake processes inherit it and accept from it.

    One accept queue for every process, rather than a socket each (``SO_REUSEPORT``): the
    kernel hashes each connection to one ``SO_REUSEPORT`` socket, so two long-lived client
    connections landed on the same process half of the time and left a core idle. From one
    queue, one connection per wake-up (``SharedListener``), the idle process takes the next one.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = SharedListener(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    socket.socket.listen(sock, 2048)
    sock.set_inheritable(False)  # handed to intake processes explicitly (pass_fds), not to every child
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

    def __init__(self, settings: Settings, count: int, password: str, listen_fd: int) -> None:
        self.settings = settings
        self.count = count
        self.listen_fd = listen_fd
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
            [sys.executable, "-m", "abaxus.cli", "serve", "--role", "intake", "--listen-fd", str(self.listen_fd)],
            env={**self.env, "ABAXUS_INTAKE_PARTITION": str(partition)}, stdin=subprocess.DEVNULL,
            pass_fds=(self.listen_fd,))

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
