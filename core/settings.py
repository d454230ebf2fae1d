"""One typed settings object, read once from the environment at start-up (§17).

Nothing else in Abaxus reads ``os.environ``: the app factory, the CLI and the tests build a
``Settings`` and pass it down. Bad values fail loudly at start, naming the variable.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

__all__ = ["Settings", "SettingsError"]

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
    dedup_window_seconds: int = 7 * 86400
    host: str = "127.0.0.1"
    port: int = 8080
    bootstrap_key: str | None = None
    rate_limit_rpm: int = 6000
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
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

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
        lag = get("ABAXUS_INTAKE_MAX_LAG") or "5s"
        m_lag = _DURATION_RE.match(lag)
        if m_lag is None or int(m_lag.group(1)) < 1:
            raise SettingsError(f"ABAXUS_INTAKE_MAX_LAG must look like 5s or 2m (at least 1s), got {lag!r}.")
        return cls(
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
            stripe_secret_key=get("STRIPE_SECRET_KEY"),
            stripe_api_base=get("STRIPE_API_BASE") or "https://api.stripe.com",
            stripe_webhook_secret=get("STRIPE_WEBHOOK_SECRET"),
            log_format=log_format,
            epoch_seconds=epoch_seconds,
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def resolved_database_url(self) -> str:
        """SQLite in the data dir unless a database URL is given."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'metadata.sqlite3').resolve()}"
