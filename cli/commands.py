"""The ``abaxus`` command: serve, migrate, api-keys, sql, quickstart (§17)."""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from abaxus.api.app import create_app, open_metadata
from abaxus.billing.api_keys import any_keys, create_key
from abaxus.cli.quickstart import run_quickstart
from abaxus.logging import configure_logging
from abaxus.settings import Settings, SettingsError
from abaxus.store.usage import UsageStore, open_usage_client

__all__ = ["app"]

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


@app.command()
def serve(host: str = typer.Option(None, help="Listen address (default ABAXUS_HOST or 127.0.0.1)."),
          port: int = typer.Option(None, help="Port (default ABAXUS_PORT or 8080).")) -> None:
    """Run the API and the ingestion dataflow in one process (embedded by default)."""
    settings = _settings()
    settings = settings.with_(host=host or settings.host, port=port or settings.port)
    configure_logging(settings.log_format)
    engine = open_metadata(settings)  # migrated, bootstrap key created: the app's start finds it so
    keyless = not any_keys(engine)
    engine.dispose()
    console.print(f"Abaxus listening on [bold]http://{settings.host}:{settings.port}[/bold] "
                  f"(data in {settings.data_dir.resolve()}; API docs at /schema/swagger)")
    if keyless:
        console.print("No API key yet: in another shell run [bold]abaxus api-keys create --name admin[/bold] "
                      "(with the server stopped when embedded), or start with ABAXUS_BOOTSTRAP_KEY set.")
    api = create_app(settings)
    api.on_startup.append(_tune_gc)  # after the lifespan opened the stores: their objects are frozen too
    # One worker: in embedded mode chDB lets only one process own the data directory.
    uvicorn.run(api, host=settings.host, port=settings.port, workers=1, log_level="warning",
                timeout_graceful_shutdown=10)


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
    key = create_key(open_metadata(_settings()), name, scope, mode)
    console.print(f"Created {key.scope} key {key.id}. Its secret is shown only now:")
    print(key.secret)


@app.command()
def sql(query: str = typer.Argument(..., help="One read-only SELECT, WITH, SHOW or DESCRIBE statement.")) -> None:
    """Query the usage store read-only (embedded: with the server stopped)."""
    first = query.lstrip().split(None, 1)[0].upper() if query.strip() else ""
    if first not in ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"):
        console.print("[red]Only one read-only SELECT, WITH, SHOW or DESCRIBE statement is allowed.[/red]")
        raise typer.Exit(2)
    try:
        client = open_usage_client(_settings())
    except Exception as exc:  # noqa: BLE001 - any failure to open is reported, with the likely cause
        console.print(f"[red]Cannot open the usage store:[/red] {exc}\n"
                      "Embedded, one process owns the data directory: stop 'abaxus serve' first.")
        raise typer.Exit(1) from None
    try:
        result = client.query(query, settings={"readonly": 1})
    except Exception as exc:  # noqa: BLE001 - the engine's error is the answer to a bad query
        console.print(f"[red]Query failed:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        client.close()
    table = Table(*result.column_names)
    for row in result.result_rows:
        table.add_row(*[str(v) for v in row])
    console.print(table)


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
