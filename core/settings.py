"""One typed settings object, read once from the environment at start-up (§17).

Nothing else in Abaxus reads ``os.environ``: the app factory, the CLI and the tests build a
``Settings`` and pass it down. Bad values fail loudly at start, naming the variable.

Unknown ``ABAXUS_*`` variables fail too (a misspelt name would otherwise leave the default
in force without a word). The known ones are exactly those
``from_env`` reads (it reads every one of them on every call, so the list cannot drift),
plus ``OTHER_PROGRAMS_VARIABLES``: names that share the prefix but belong to other programs
of this repository and are ignored here, so a shell set up for them can still start Abaxus.

``repr`` masks the secrets (the bootstrap key, the Stripe keys, passwords in URLs), so a
settings object can be logged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from abaxus.clock import Clock, SystemClock

__all__ = ["OTHER_PROGRAMS_VARIABLES", "Settings", "SettingsError"]

# ABAXUS_* variables that are not settings of the server: Settings ignores them.
OTHER_PROGRAMS_VARIABLES = frozenset({
    "ABAXUS_API_KEY",  # abaxus-client (sdk/python): the key it sends
    "ABAXUS_BASE_URL",  # abaxus-client: the server it talks to
    "ABAXUS_TEST_PG",  # tests/conftest.py: the PostgreSQL server the tests use
    "ABAXUS_CI_VENV",  # .ci/run: where CI builds its virtualenv
    "ABAXUS_IMAGE",  # deploy/compose.yaml: the image the Abaxus services run
})
_SECRETS = frozenset({"bootstrap_key", "stripe_secret_key", "stripe_webhook_secret", "usage_password"})
_URLS = frozenset({"database_url", "clickhouse_url", "rate_limit_storage"})
# Where rate-limit counters live (the ``limits`` package's storage URLs we support).
_RATE_LIMIT_SCHEMES = frozenset({"memory", "redis", "rediss", "redis+unix"})
_PASSWORD_PARAM = re.compile(r"(?i)((?:^|&)(?:password|pass|pwd)=)[^&]*")

_KEY_RE = re.compile(r"^sk_(live|test)_[A-Za-z0-9]{40}$")
_DURATION_RE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class SettingsError(ValueError):
    """A configuration variable has a value Abaxus cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("./abaxus-data")
    database_url: str | None = None
    clickhouse_url: str | None = None
    kafka_brokers: str | None = None
    kafka_topic: str = "abaxus-events"
    # Partitions of the topic (created with this many when absent); a key always goes to the
    # same one, so all duplicates of a key meet in one dedup partition. Never lower it later.
    kafka_partitions: int = 8
    # Port of a worker's own /healthz, /readyz and /metrics (``abaxus serve --role worker``).
    worker_port: int = 8081
    # The ClickHouse HTTP interface the process that owns embedded chDB offers other processes
    # (API replicas, analysts' clients); loopback by default; ``off`` (None) runs none.
    usage_host: str = "127.0.0.1"
    usage_port: int | None = 8123
    # Password of the front's full-access user ``abaxus`` (API replicas use it in their
    # ABAXUS_CLICKHOUSE_URL); unset: only read keys get in, read-only.
    usage_password: str | None = None
    # Extra HTTP intake processes of an embedded ``abaxus serve`` (0: one process). Each shares
    # the port, validates and makes events durable in its own log partition, which the one
    # process owning chDB reads with its own; they reach the usage store through its front.
    intake_processes: int = 0
    # Which log partition this process writes (0: the chDB owner's; set for intake processes).
    intake_partition: int = 0
    # ABAXUS_DEDUP_WINDOW: still read and checked (old configurations keep starting), no longer used:
    # the dedup step keeps only keys not stored yet in memory (abaxus.pipeline.dedup).
    dedup_window_seconds: int = 7 * 86400
    host: str = "127.0.0.1"
    port: int = 8080
    bootstrap_key: str | None = None
    rate_limit_rpm: int = 6000
    # memory:// counts in this process (each replica its own limit); a Redis URL shares the
    # counters, so several replicas enforce one limit per key together.
    rate_limit_storage: str = "memory://"
    # Names of the counters in a shared storage start with this (one Redis, several deployments).
    rate_limit_prefix: str = "abaxus"
    stripe_secret_key: str | None = None
    stripe_api_base: str = "https://api.stripe.com"
    stripe_webhook_secret: str | None = None
    log_format: str = "json"
    # Seconds between Bytewax snapshots; shorter replays less after a crash but costs throughput.
    epoch_seconds: float = 5.0
    # Size at which the intake log starts a new segment; segments the sink has committed
    # past are deleted, so the log holds little more than what is still in flight.
    log_segment_bytes: int = 256 * 1024 * 1024
    # Back-pressure (§17): past either bound, event requests get 503 NOT_READY + Retry-After
    # and nothing of them is accepted, so lag and memory stay bounded under any load.
    intake_max_backlog_events: int = 500_000
    intake_max_lag_seconds: float = 5.0
    # Outbound webhooks: the first retry waits up to this (doubling per attempt, full jitter,
    # capped at 6 h); after the window a delivery is marked failed. Alerts: seconds between
    # evaluations, so a crossing fires well within 60 s of its usage being stored.
    webhook_retry_base_seconds: float = 30.0
    webhook_retry_window_seconds: float = 3 * 86400.0
    alert_interval_seconds: float = 10.0
    extra: dict[str, str] = field(default_factory=dict)
    # What "now" is (see abaxus.clock); tests pass a ManualClock. Not read from the environment.
    clock: Clock = field(default_factory=SystemClock, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``ABAXUS_*`` (and ``STRIPE_*``) variable; refuse bad values and unknown names."""
        env = os.environ if env is None else env
        asked = _Asked(env)
        settings = cls._read(asked)
        known = sorted(name for name in asked.names if name.startswith("ABAXUS_"))
        for name in sorted(env):
            if name.startswith("ABAXUS_") and name not in asked.names and name not in OTHER_PROGRAMS_VARIABLES:
                raise SettingsError(f"{name} is not an Abaxus setting; unset it or use one of: {', '.join(known)}.")
        return settings

    @classmethod
    def _read(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        def integer(name: str, default: int, minimum: int = 0) -> int:
            raw = get(name)
            if raw is None:
                return default
            if not raw.isdigit() or int(raw) < minimum:
                raise SettingsError(f"{name} must be a whole number ≥ {minimum}, got {raw!r}.")
            return int(raw)

        window = get("ABAXUS_DEDUP_WINDOW") or "7d"
        m = _DURATION_RE.match(window)
        if m is None:
            raise SettingsError(f"ABAXUS_DEDUP_WINDOW must look like 7d, 12h, 30m or 90s, got {window!r}.")
        log_format = get("ABAXUS_LOG_FORMAT") or "json"
        if log_format not in ("json", "console"):
            raise SettingsError(f"ABAXUS_LOG_FORMAT must be json or console, got {log_format!r}.")
        bootstrap = get("ABAXUS_BOOTSTRAP_KEY")
        if bootstrap is not None and not _KEY_RE.match(bootstrap):
            raise SettingsError("ABAXUS_BOOTSTRAP_KEY must look like sk_live_ or sk_test_ followed by 40 letters or digits.")
        epoch = get("ABAXUS_EPOCH_SECONDS")
        try:
            epoch_seconds = float(epoch) if epoch else 5.0
        except ValueError:
            raise SettingsError(f"ABAXUS_EPOCH_SECONDS must be a number of seconds, got {epoch!r}.") from None

        def seconds(name: str, default: float) -> float:
            raw = get(name)
            try:
                value = float(raw) if raw else default
            except ValueError:
                value = -1.0
            if not 0 < value < float("inf"):
                raise SettingsError(f"{name} must be a positive number of seconds, got {raw!r}.")
            return value

        retry_window = get("ABAXUS_WEBHOOK_RETRY_WINDOW") or "3d"
        m_window = _DURATION_RE.match(retry_window)
        if m_window is None or int(m_window.group(1)) < 1:
            raise SettingsError(f"ABAXUS_WEBHOOK_RETRY_WINDOW must look like 3d, 12h or 90s, got {retry_window!r}.")
        rate_limit_storage = get("ABAXUS_RATE_LIMIT_STORAGE") or "memory://"
        if "://" not in rate_limit_storage or urlsplit(rate_limit_storage).scheme not in _RATE_LIMIT_SCHEMES:
            got = f"{rate_limit_storage.split('://', 1)[0]}://…" if "://" in rate_limit_storage else "no scheme://"
            raise SettingsError("ABAXUS_RATE_LIMIT_STORAGE must be memory:// (counts in this process) or a Redis URL such "
                                f"as redis://host:6379/0 (counts shared by every replica), got {got}.")
        lag = get("ABAXUS_INTAKE_MAX_LAG") or "5s"
        m_lag = _DURATION_RE.match(lag)
        if m_lag is None or int(m_lag.group(1)) < 1:
            raise SettingsError(f"ABAXUS_INTAKE_MAX_LAG must look like 5s or 2m (at least 1s), got {lag!r}.")
        usage_port_raw = get("ABAXUS_USAGE_PORT")
        usage_port: int | None = None if usage_port_raw == "off" else integer("ABAXUS_USAGE_PORT", 8123, 1)
        return cls(
            kafka_partitions=integer("ABAXUS_KAFKA_PARTITIONS", 8, 1),
            worker_port=integer("ABAXUS_WORKER_PORT", 8081, 1),
            usage_host=get("ABAXUS_USAGE_HOST") or "127.0.0.1",
            usage_port=usage_port,
            usage_password=get("ABAXUS_USAGE_PASSWORD"),
            intake_processes=integer("ABAXUS_INTAKE_PROCESSES", 0, 0),
            intake_partition=integer("ABAXUS_INTAKE_PARTITION", 0, 0),
            intake_max_backlog_events=integer("ABAXUS_INTAKE_MAX_BACKLOG", 500_000, 1_000),
            intake_max_lag_seconds=float(int(m_lag.group(1)) * _UNITS[m_lag.group(2)]),
            data_dir=Path(get("ABAXUS_DATA_DIR") or "./abaxus-data"),
            database_url=get("ABAXUS_DATABASE_URL"),
            clickhouse_url=get("ABAXUS_CLICKHOUSE_URL"),
            kafka_brokers=get("ABAXUS_KAFKA_BROKERS"),
            kafka_topic=get("ABAXUS_KAFKA_TOPIC") or "abaxus-events",
            dedup_window_seconds=int(m.group(1)) * _UNITS[m.group(2)],
            host=get("ABAXUS_HOST") or "127.0.0.1",
            port=integer("ABAXUS_PORT", 8080, 1),
            bootstrap_key=bootstrap,
            rate_limit_rpm=integer("ABAXUS_RATE_LIMIT_RPM", 6000, 1),
            rate_limit_storage=rate_limit_storage,
            rate_limit_prefix=get("ABAXUS_RATE_LIMIT_PREFIX") or "abaxus",
            stripe_secret_key=get("STRIPE_SECRET_KEY"),
            stripe_api_base=get("STRIPE_API_BASE") or "https://api.stripe.com",
            stripe_webhook_secret=get("STRIPE_WEBHOOK_SECRET"),
            log_format=log_format,
            epoch_seconds=epoch_seconds,
            webhook_retry_base_seconds=seconds("ABAXUS_WEBHOOK_RETRY_BASE", 30.0),
            webhook_retry_window_seconds=float(int(m_window.group(1)) * _UNITS[m_window.group(2)]),
            alert_interval_seconds=seconds("ABAXUS_ALERT_INTERVAL", 10.0),
        )

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and f.name in _SECRETS:
                value = "***"
            elif value is not None and f.name in _URLS:
                value = _without_password(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def resolved_database_url(self) -> str:
        """SQLite in the data dir unless a database URL is given."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'metadata.sqlite3').resolve()}"


class _Asked(Mapping[str, str]):
    """The environment, noting every name looked up (``from_env`` looks up each one it knows)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:  # Mapping's get() and ``in`` come through here
        self.names.add(name)
        return self._env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def _without_password(url: str) -> str:
    """``url`` with its password hidden: ``user:***@host``, ``?password=***``."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:  # not a URL that can be taken apart: show none of it
        return "***"
    netloc = parts.netloc
    if has_password:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = _PASSWORD_PARAM.sub(r"\1***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))
