"""`catalogcap backfill`: caption a whole queue at once, on a Ray cluster or in this process."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalogcap.cli.app import App, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(backfill)


@click.command()
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pending", is_flag=True, help="Caption every runnable job in the store (instead of FOLDERS).")
@click.option("--engine", "engine_name", type=click.Choice(["ray", "local"]), default="local", show_default=True,
              help="ray: an actor pool on a Ray cluster (pip install 'catalogcap[ray]'); local: this process.")
@click.option("--address", help="The Ray cluster to join (e.g. ray://head:10001 or auto); default: start a local one.")
@click.option("--workers", type=click.IntRange(1, 4096), default=2, show_default=True,
              help="Ray actors, each with its own copy of the model.")
@click.option("--gpus-per-worker", type=click.FloatRange(0, 64), default=0.0, show_default=True,
              help="GPUs each Ray actor reserves (0: CPU actors).")
@click.option("--batch-size", type=click.IntRange(1, 4096), help="Images per claimed batch and model call.")
@click.option("--json", "as_json", is_flag=True, help='Print {"images", "captioned", "failed", "seconds", "img_s"}.')
@pass_app
def backfill(app: App, folders: tuple[Path, ...], pending: bool, engine_name: str, address: str | None,
             workers: int, gpus_per_worker: float, batch_size: int | None, as_json: bool) -> None:
    """Caption what is queued, in bulk: every runnable job (--pending), or the images under
    FOLDERS (registered first, as `scan --queue-only` does).

    Each batch is claimed, captioned with the same captioner as the daemon (model, active adapter,
    prompts, cleaning rules) and committed with its jobs exactly as `catalogcap worker` does, so a
    backfill beside running workers captions nothing twice, and one interrupted and run again
    carries on where it stopped. Exits 1 if any image was refused."""
    if pending == bool(folders):
        raise click.UsageError("give FOLDERS to register and caption, or --pending for everything queued")
    from catalogcap.backfill import backfill as run_backfill
    from catalogcap.captioner.model import resolve_model

    if batch_size is not None:
        app.overrides["batch_size"] = batch_size
    settings, engine = app.settings, app.engine
    if address and engine_name != "ray":
        raise click.UsageError("--address is for --engine ray")
    resolve_model(settings.model, settings.model_revision)  # fail in seconds, before any job is claimed
    roots = [folder.absolute() for folder in folders] or None
    show = not as_json and app.err.is_terminal
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=app.err, disable=not show, transient=True)
    with progress:
        if roots:
            from catalogcap.intake import scan

            task = progress.add_task("registering", total=None)
            report = scan(engine, roots, settings, advance=lambda count: progress.advance(task, count))
            if report.unreadable_folders:
                for item in report.unreadable_folders:
                    app.err.print(f"warning: {item['path']}: {item['reason']}", markup=False, highlight=False)
        task = progress.add_task(f"captioning ({engine_name})", total=None)
        summary = run_backfill(engine, settings, roots=roots, engine_name=engine_name, address=address,
                               workers=workers, gpus_per_worker=gpus_per_worker, batch_size=settings.batch_size,
                               progress=lambda row: progress.advance(task, row["planned"]))
    if as_json:
        app.json(summary.to_json())
    else:
        app.table(("count", "value"), [
            ("images", str(summary.images)), ("captioned", str(summary.captioned)),
            ("failed", str(summary.failed)), ("retrying later", str(summary.retrying)),
            ("taken by other workers", str(summary.skipped)), ("seconds", f"{summary.seconds:.1f}"),
            ("images/s", f"{summary.img_s:.2f}"), ("engine", engine_name if engine_name == "local"
                                                   else f"ray, {summary.actors} actors")],
            title="backfill", header=False)
    if summary.failed:
        raise click.exceptions.Exit(1)
