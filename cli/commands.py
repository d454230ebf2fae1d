"""The ``abaxus`` command: serve, migrate, api-keys, sql, quickstart (§17)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import tempfile
import threading
from enum import StrEnum
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from abaxus.api.app import create_app, open_metadata, usage_front
from abaxus.billing.api_keys import any_keys, create_key
from abaxus.cli.intake import (
    ConnectionCounts,
    IntakeProcesses,
    SharedListener,
    die_with_parent,
    listening_socket,
    owner_socket,
    usage_password,
)
from abaxus.cli.quickstart import run_quickstart
from abaxus.logging import configure_logging
from abaxus.pipeline.kafka import BrokerUnavailable
from abaxus.pipeline.worker import Worker, wait_until_stopped
from abaxus.settings import Settings, SettingsError
from abaxus.store.usage import UsageStore, open_usage_client
from abaxus.telemetry import share_across_processes

__all__ = ["DEDICATED_FROM", "app"]

# From this many intake processes on, the owner leaves HTTP to them (see ``_run_owner_only``).
DEDICATED_FROM = 2

_MAX_KEY_NAME = 100

app = typer.Typer(help="Abaxus: self-hosted usage-based billing.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="api-keys")
console = Console()


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


class Role(StrEnum):
    all = "all"
    api = "api"
    worker = "worker"
    intake = "intake"


@app.command()
def serve(host: str = typer.Option(None, help="Listen address (default ABAXUS_HOST or 127.0.0.1)."),
          port: int = typer.Option(None, help="Port (default ABAXUS_PORT or 8080)."),
          role: Role = typer.Option(Role.all, help="all: everything in one process (embedded; with ABAXUS_KAFKA_BROKERS "
                                    "the queue is Kafka; with ABAXUS_INTAKE_PROCESSES=N, N more processes take events "
                                    "on the same port). api: the HTTP API, events produced to Kafka. worker: the "
                                    "dataflow from Kafka into the usage store. intake: one of those N processes "
                                    "(started by the server itself)."),
          workers: int = typer.Option(1, "--workers", "-w", min=1, help="Bytewax workers in this process (Kafka only)."),
          process_id: int | None = typer.Option(None, "--process-id", "-i", help="worker role: this process's index "
                                                "in a multi-process Bytewax cluster (needs --addresses)."),
          addresses: str | None = typer.Option(None, "--addresses", "-a", help="worker role: host:port of every "
                                               "process of the cluster, separated by ';' (needs a ClickHouse server)."),
          listen_fd: int | None = typer.Option(None, "--listen-fd", hidden=True,
                                               help="intake role: the server's listening socket, inherited.")) -> None:
    """Run Abaxus: by default the API and the ingestion dataflow in one process (embedded)."""
    settings = _settings()
    settings = settings.with_(host=host or settings.host, port=port or settings.port)
    configure_logging(settings.log_format)
    problem = _role_problem(settings, role, addresses)
    if problem:
        console.print(f"[red]Configuration error:[/red] {problem}")
        raise typer.Exit(2)
    if "ABAXUS_DEDUP_WINDOW" in os.environ and role in (Role.all, Role.worker):
        console.print("ABAXUS_DEDUP_WINDOW has no effect any more and can be removed: the dataflow keeps only "
                      "the keys it has not stored yet in memory and asks the usage store about the rest.")
    if role is Role.intake:
        if listen_fd is None:
            console.print("[red]Configuration error:[/red] --role intake is started by `abaxus serve` itself "
                          "(ABAXUS_INTAKE_PROCESSES=N), which hands it its listening socket.")
            raise typer.Exit(2)
        _serve_intake(settings, listen_fd)
        return
    if role is Role.worker:
        try:
            _serve_worker(settings, workers, process_id, addresses.split(";") if addresses else None)
        except BrokerUnavailable as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        return
    engine = open_metadata(settings)  # migrated, bootstrap key created: the app's start finds it so
    keyless = not any_keys(engine)
    engine.dispose()
    console.print(f"Abaxus {'API replica' if role is Role.api else ''} listening on "
                  f"[bold]http://{settings.host}:{settings.port}[/bold] "
                  f"(data in {settings.data_dir.resolve()}; API docs at /schema/swagger)")
    if keyless:
        console.print("No API key yet: in another shell run [bold]abaxus api-keys create --name admin[/bold] "
                      "(with the server stopped when embedded), or start with ABAXUS_BOOTSTRAP_KEY set.")
    if role is Role.all and settings.intake_processes and not settings.kafka_brokers:
        _serve_with_intake_processes(settings)
        return
    api = create_app(settings, with_usage_front=role is Role.all)
    api.on_startup.append(_tune_gc)  # after the lifespan opened the stores: their objects are frozen too
    # All in one process with a broker: the API produces to Kafka and this process's own
    # worker stores from it (one owner of chDB); its health and metrics on ABAXUS_WORKER_PORT.
    try:
        colocated = _colocated_worker(settings, workers) if role is Role.all and settings.kafka_brokers else None
    except BrokerUnavailable as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    try:
        # One server process: in embedded mode chDB lets only one process own the data directory.
        uvicorn.run(api, host=settings.host, port=settings.port, workers=1, log_level="warning",
                    timeout_graceful_shutdown=10)
    finally:
        if colocated is not None:
            worker, usage = colocated
            worker.stop()
            usage.close()


def _serve_with_intake_processes(settings: Settings) -> None:
    """The embedded server with ``ABAXUS_INTAKE_PROCESSES`` intake processes on its listening socket."""
    try:
        listener = listening_socket(settings.host, settings.port)
    except OSError as exc:
        console.print(f"[red]Cannot listen on {settings.host}:{settings.port}: {exc.strerror}.[/red] Stop what "
                      "holds the port or set ABAXUS_PORT.")
        raise typer.Exit(1) from None
    password = usage_password(settings)
    settings = settings.with_(usage_password=password)
    intake = IntakeProcesses(settings, settings.intake_processes, password, listener.fileno())
    share_across_processes(_shared_metrics_dir(settings), fresh=True)  # a scrape of any process shows all
    api = create_app(settings, with_usage_front=True)
    api.on_startup.append(_tune_gc)  # after the lifespan opened the stores: their objects are frozen too
    # Once the usage front answers: the intake processes reach the store through it.
    api.on_startup.append(intake.start)
    api.on_shutdown.append(intake.shutdown)
    try:
        if settings.intake_processes >= DEDICATED_FROM:
            _run_owner_only(api, settings)
        else:
            console.print("1 intake process takes events on the same port.")
            listener.balance(_connection_counts(settings), 0, _accepting_peers(settings, 0))
            _serve_on(api, listener)
    finally:
        listener.close()


def _shared_metrics_dir(settings: Settings) -> Path:
    """Where the server and its intake processes keep their metrics, summed by whichever answers ``/metrics``."""
    return settings.data_dir / "intake" / "metrics"


def _connection_counts(settings: Settings) -> ConnectionCounts:
    return ConnectionCounts(settings.data_dir / "intake" / "connections", settings.intake_processes + 1)


def _accepting_peers(settings: Settings, slot: int) -> tuple[int, ...]:
    """The other processes that accept from the listening socket: the intake processes, and the owner (0) beside one."""
    first = 1 if settings.intake_processes >= DEDICATED_FROM else 0
    return tuple(p for p in range(first, settings.intake_processes + 1) if p != slot)


def _serve_on(api: Any, sock: socket.socket) -> None:
    """Serve ``api`` on an already listening socket; from the shared one, one connection per wake-up."""
    shared = isinstance(sock, SharedListener)
    # asyncio's loop, not uvloop: uvloop accepts in C and would never ask SharedListener.accept.
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning", timeout_graceful_shutdown=10,
                                           backlog=1 if shared else 2048, loop="asyncio" if shared else "auto"))
    server.run(sockets=[sock])


def _run_owner_only(api: Any, settings: Settings) -> None:
    """Leave the public port to the intake processes; serve this process's API on a private socket.

    From two intake processes on, the owner's one GIL is worth more to the dataflow (dedup and
    the inserts into chDB) than to HTTP: measured on 2 cores, two intake processes with the
    owner only storing took 221k events/s, the owner answering beside one 173k. It keeps the listening socket open (it
    made it; connections wait in its queue while an intake process restarts) but never
    accepts from it; ``/readyz`` of the dataflow is on ``<data dir>/owner.sock`` (``/metrics`` of
    every process sums all of them, see ``share_across_processes``).
    """
    sock, path = owner_socket(settings.data_dir)
    console.print(f"{settings.intake_processes} intake processes take HTTP on the port; this process stores their "
                  f"events (its own API on the unix socket {path}).")
    try:
        _serve_on(api, sock)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _serve_intake(settings: Settings, listen_fd: int) -> None:
    """One intake process: the API on the server's listening socket, events into its own log partition."""
    die_with_parent()
    share_across_processes(_shared_metrics_dir(settings), fresh=False)
    api = create_app(settings, background=False)
    api.on_startup.append(_tune_gc)
    listener = SharedListener(fileno=listen_fd)
    partition = settings.intake_partition
    listener.balance(_connection_counts(settings), partition, _accepting_peers(settings, partition))
    _serve_on(api, listener)


def _colocated_worker(settings: Settings, workers: int) -> tuple[Worker, UsageStore]:
    usage = UsageStore(settings)
    worker = Worker(settings, usage, workers=workers)
    worker.start()
    return worker, usage


def _role_problem(settings: Settings, role: Role, addresses: str | None) -> str | None:  # noqa: PLR0911 - one answer per rule
    """Why this role cannot run with these settings (each answer says what to set), else None."""
    if role is Role.intake:
        if settings.intake_partition < 1 or not settings.clickhouse_url:
            return ("--role intake is started by `abaxus serve` itself (ABAXUS_INTAKE_PROCESSES=N): it needs "
                    "ABAXUS_INTAKE_PARTITION ≥ 1 and ABAXUS_CLICKHOUSE_URL (the owner's usage front).")
        return None
    if settings.intake_processes and (role is not Role.all or settings.kafka_brokers):
        return ("ABAXUS_INTAKE_PROCESSES is for the embedded server (--role all, no ABAXUS_KAFKA_BROKERS); with Kafka, "
                "run more --role api replicas instead.")
    if settings.intake_processes and settings.usage_port is None and not settings.clickhouse_url:
        return ("ABAXUS_INTAKE_PROCESSES needs the usage front (the intake processes reach chDB through it): leave "
                "ABAXUS_USAGE_PORT on (a free port), or use a ClickHouse server (ABAXUS_CLICKHOUSE_URL).")
    if role is not Role.all and not settings.kafka_brokers:
        return f"--role {role.value} needs ABAXUS_KAFKA_BROKERS (host:port of the Kafka brokers)."
    if role is Role.api and not settings.clickhouse_url:
        return ("--role api reads the usage store over HTTP: set ABAXUS_CLICKHOUSE_URL to the ClickHouse server, or to "
                "the worker's usage front (http://abaxus:<ABAXUS_USAGE_PASSWORD>@<worker host>:<ABAXUS_USAGE_PORT>).")
    if addresses and not settings.clickhouse_url:
        return ("a multi-process worker cluster (--addresses) needs a ClickHouse server (ABAXUS_CLICKHOUSE_URL): "
                "only one process may own an embedded chDB directory; use --workers for more workers in one process.")
    return None


def _serve_worker(settings: Settings, workers: int, process_id: int | None, addresses: list[str] | None) -> None:
    """The dataflow from Kafka; embedded, also the usage front through which API replicas and analysts reach chDB."""
    usage = UsageStore(settings)
    engine = open_metadata(settings)  # read keys authenticate analysts at the usage front
    front = usage_front(settings, engine)
    if front is not None:
        front.start()
    worker = Worker(settings, usage, workers=workers, process_id=process_id, addresses=addresses)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker.start()
    console.print(f"Abaxus worker: {workers} dataflow worker(s) on topic {settings.kafka_topic} "
                  f"({worker.partitions} partitions); health and metrics on "
                  f"[bold]http://{settings.host}:{worker.health_port}[/bold]")
    try:
        wait_until_stopped(stop, worker)
    finally:
        worker.stop()
        if front is not None:
            front.stop()
        usage.close()
        engine.dispose()


def _tune_gc() -> None:
    """Keep the cyclic GC off the ingest latency.

    Measured under load: each full collection walked every long-lived object startup built
    (the app, pyarrow, clickhouse-connect: ~190k) and stalled requests ~100 ms, several times
    a second: that was the p99. Startup's objects are frozen out of collection, and full
    collections are made rare (young generations still run at their usual pace).
    """
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)


@app.command()
def migrate(rebuild_summary: bool = typer.Option(False, "--rebuild-summary",
                                                 help="Also recompute the pre-aggregated usage from raw events.")) -> None:
    """Create or upgrade the metadata and usage schemas (safe to re-run)."""
    settings = _settings()
    open_metadata(settings).dispose()
    usage = UsageStore(settings)
    if rebuild_summary:
        usage.rebuild_summary()
        console.print("Pre-aggregated usage rebuilt from raw events.")
    usage.close()
    console.print("Schemas are up to date.")


@keys_app.command("create")
def create_api_key(name: str = typer.Option(..., "--name", help="A label for the key."),
                   scope: str = typer.Option("admin", "--scope", help="admin, ingest or read."),
                   mode: str = typer.Option("live", "--mode", help="live or test.")) -> None:
    """Create an API key and print its secret once."""
    if scope not in ("admin", "ingest", "read"):
        console.print("[red]--scope must be admin, ingest or read.[/red]")
        raise typer.Exit(2)
    if mode not in ("live", "test"):
        console.print("[red]--mode must be live or test.[/red]")
        raise typer.Exit(2)
    if not 1 <= len(name) <= _MAX_KEY_NAME:
        console.print("[red]--name must be 1–100 characters.[/red]")
        raise typer.Exit(2)
    settings = _settings()
    key = create_key(open_metadata(settings), name, scope, mode, clock=settings.clock)
    console.print(f"Created {key.scope} key {key.id}. Its secret is shown only now:")
    print(key.secret)


@app.command()
def sql(query: str = typer.Argument(..., help="One read-only SELECT, WITH, SHOW or DESCRIBE statement."),
        key: str | None = typer.Option(None, "--key", envvar="ABAXUS_API_KEY",
                                       help="A read key: query a running server through its usage front.")) -> None:
    """Query the usage store read-only: a ClickHouse server, a running Abaxus's usage front, or a stopped one's chDB."""
    first = query.lstrip().split(None, 1)[0].upper() if query.strip() else ""
    if first not in ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"):
        console.print("[red]Only one read-only SELECT, WITH, SHOW or DESCRIBE statement is allowed.[/red]")
        raise typer.Exit(2)
    settings = _settings()
    try:
        client, through_front = _sql_client(settings, key)
    except Exception as exc:  # noqa: BLE001 - any failure to open is reported, with the likely cause
        console.print(f"[red]Cannot open the usage store:[/red] {exc}\n"
                      "Embedded, one process owns the data directory: query a running server through its usage front "
                      "(ABAXUS_USAGE_PORT, with --key and a read key), or stop it first.")
        raise typer.Exit(1) from None
    try:
        # The front runs an analyst's query read-only itself (and refuses a settings change).
        result = client.query(query) if through_front else client.query(query, settings={"readonly": 1})
    except Exception as exc:  # noqa: BLE001 - the engine's error is the answer to a bad query
        console.print(f"[red]Query failed:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        client.close()
    table = Table(*result.column_names)
    for row in result.result_rows:
        table.add_row(*[str(v) for v in row])
    console.print(table)


def _sql_client(settings: Settings, key: str | None) -> tuple[Any, bool]:
    """The server's client, else the running front's (if one answers), else the embedded chDB's."""
    if settings.clickhouse_url or settings.usage_port is None:
        return open_usage_client(settings), False
    try:
        answered = httpx.get(f"http://{settings.usage_host}:{settings.usage_port}/ping", timeout=1.0).text == "Ok.\n"
    except httpx.HTTPError:
        answered = False
    if not answered:
        return open_usage_client(settings), False
    if key:
        user, password = "analyst", key
    elif settings.usage_password:
        user, password = "abaxus", settings.usage_password
    else:
        raise RuntimeError(f"Abaxus is running (its usage front answers on {settings.usage_host}:{settings.usage_port}): "
                           "pass --key with an API key of read scope")
    client = clickhouse_connect.get_client(host=settings.usage_host, port=settings.usage_port, username=user,
                                           password=password, tz_mode="aware")
    return client, True


@app.command()
def quickstart(events: int = typer.Option(1_200_000, help="How many api_calls events to send."),
               data_dir: Path | None = typer.Option(None, help="Where to keep the data (default: a fresh temp dir).")) -> None:
    """Run the spec's Quick Start on a fresh embedded instance and print the invoice."""
    directory = data_dir or Path(tempfile.mkdtemp(prefix="abaxus-quickstart-"))
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("Sending api_calls", total=events)
        invoice = run_quickstart(directory, events, lambda n: bar.advance(task, n))
    table = Table(title=f"Invoice {invoice['id']} · {invoice['customer_id']} · "
                        f"{invoice['period_start'][:10]} → {invoice['period_end'][:10]}")
    for column in ("Line", "Quantity", "Unit price", "Amount"):
        table.add_column(column, justify="left" if column == "Line" else "right")
    exp = 2
    for line in invoice["line_items"]:
        table.add_row(line["description"], f"{line['quantity']:,}", line["unit_price"] or "tiered",
                      f"{line['amount'] / 10**exp:,.2f}")
        for tier in line.get("tier_breakdown", []):
            upper = f"{tier['up_to']:,}" if tier["up_to"] is not None else "∞"
            table.add_row(f"  tier {tier['tier']} ({tier['from']:,} – {upper})", f"{tier['quantity']:,}",
                          tier["unit_price"], f"{tier['amount'] / 10**exp:,.2f}")
    table.add_row("[bold]Total[/bold]", "", invoice["currency"].upper(), f"[bold]{invoice['total_amount'] / 10**exp:,.2f}[/bold]")
    console.print(table)
    console.print(f"total_amount = {invoice['total_amount']} (minor units); data in {directory}")
