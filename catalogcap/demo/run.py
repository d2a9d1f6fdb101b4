"""`catalogcap demo`: the whole loop, offline, on a CPU, in a few minutes.

watch daemon on a temporary home -> a catalog arrives -> captions -> a reviewer corrects
them toward the house style -> a training round -> gated promotion -> fresh images are
captioned with the new adapter.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlmodel import select

from catalogcap.demo import DEMO_MODEL, catalog
from catalogcap.demo.reviewer import review_toward_house
from catalogcap.settings import Settings, load_settings
from catalogcap.store.database import create_store_engine, read_session
from catalogcap.store.models import Caption, Job


@dataclass
class DemoOptions:
    images: int = 160
    fresh: int = 8
    share: float = 0.8
    seed: int = 3
    home: Path | None = None
    model: str | None = None
    quiet: bool = False


@dataclass
class DemoResult:
    home: Path
    captioned: int = 0
    reviewed: dict[str, int] = field(default_factory=dict)
    round: dict[str, Any] = field(default_factory=dict)
    fresh: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def demo_settings(home: Path, options: DemoOptions) -> Settings:
    """The demo's settings, also written to its home's config file so that any later
    command on that home (`review`, `status`, `watch`) uses the same model."""
    import tomli_w

    values = {
        "model": options.model or str(DEMO_MODEL), "batch_size": 32,
        "watch": {"quiet_seconds": 0.5},
        "queue": {"max_wait_seconds": 0.3},
        # the training policy is the product's own defaults: the demo tunes nothing
        "training": {"val_percent": 30.0, "min_new_corrections": 0},
    }
    (home / "catalogcap.toml").write_text("# written by `catalogcap demo`\n" + tomli_w.dumps(values),
                                          encoding="utf-8")
    return load_settings({"home": str(home), "model": values["model"]})


def _seed_split(engine, seed: int) -> None:
    """The demo's held-out split follows its seed (a real store draws a random key once), so the
    same command shows the same round every time."""
    from catalogcap.store.database import write_session
    from catalogcap.store.models import Meta
    from catalogcap.training.dataset import SALT_KEY

    with write_session(engine) as session:
        if session.get(Meta, SALT_KEY) is None:
            session.add(Meta(key=SALT_KEY, value=f"demo-{seed}"))


def _done(engine) -> int:
    import sqlalchemy as sa

    with read_session(engine) as session:
        return session.execute(select(sa.func.count()).select_from(Job).where(Job.state == "done")).scalar_one()


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    from catalogcap.services.announce import SILENT
    from catalogcap.services.training import train_round
    from catalogcap.watch.daemon import Daemon

    console = console or Console(stderr=True, quiet=options.quiet)
    started = time.perf_counter()
    home = options.home or Path(tempfile.mkdtemp(prefix="catalogcap-demo-"))
    home.mkdir(parents=True, exist_ok=True)
    inbox = home / "catalog"
    inbox.mkdir(exist_ok=True)
    settings = demo_settings(home, options)
    engine = create_store_engine(settings.db_url)
    result = DemoResult(home=home)
    console.rule("[bold]catalogcap demo")
    console.print(f"home {home}\nmodel {settings.model} (tiny BLIP pretrained on a generic caption style)")

    daemon = Daemon(engine, settings, [inbox], schedule_training=False)
    ready = threading.Event()
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "ready": ready}, daemon=True)
    thread.start()
    ready.wait(60)
    try:
        items = catalog.products(options.images, seed=options.seed)
        truth = catalog.by_filename(items)
        console.print(f"\n[bold]1.[/bold] {len(items)} product photos arrive in the watched folder {inbox}")
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console)
        with Live(progress, console=console, refresh_per_second=8, transient=False):
            arrive = progress.add_task("arrived ", total=len(items))
            done = progress.add_task("captioned", total=len(items))
            for i in range(0, len(items), 20):  # in bursts, like a photographer's sync
                catalog.write_catalog(inbox, items[i : i + 20])
                progress.update(arrive, completed=min(i + 20, len(items)))
                progress.update(done, completed=_done(engine))
                time.sleep(0.2)
            deadline = time.monotonic() + 600
            while _done(engine) < len(items) and time.monotonic() < deadline:
                progress.update(done, completed=_done(engine))
                time.sleep(0.2)
            progress.update(done, completed=_done(engine))
        result.captioned = _done(engine)
        _show_samples(console, engine, truth, "captions from the base model", limit=6)

        console.print(f"\n[bold]2.[/bold] a reviewer accepts or corrects {options.share:.0%} of them toward the "
                      "house style")
        result.reviewed = review_toward_house(engine, truth, share=options.share, seed=options.seed)
        _seed_split(engine, options.seed)
        console.print(f"   {result.reviewed['accepted']} accepted, {result.reviewed['edited']} edited")

        console.print("\n[bold]3.[/bold] a nightly training round: LoRA on the reviews, evaluated on held-out images")
        bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=console)
        with bar:
            task = bar.add_task("train", total=None, loss="-")
            # the demo's home enables no plugin: nobody to tell about a promotion
            round_result = train_round(engine, settings, SILENT, force=True, on_step=lambda s, t, loss: bar.update(
                task, completed=s, total=t, loss=f"{loss:.3f}"))
        result.round = round_result.to_json()
        _show_metrics(console, round_result)

        console.print(f"\n[bold]4.[/bold] {options.fresh} new photos arrive; the daemon captions them with "
                      f"{'the new adapter' if round_result.promoted else 'the base model'}")
        fresh = catalog.products(options.fresh, seed=options.seed + 1000, start=10_000)
        before = _done(engine)
        catalog.write_catalog(inbox, fresh)
        deadline = time.monotonic() + 300
        while _done(engine) < before + len(fresh) and time.monotonic() < deadline:
            time.sleep(0.2)
        result.fresh = _show_fresh(console, engine, settings, catalog.by_filename(fresh))
    finally:
        daemon.stop()
        thread.join(60)
        engine.dispose()
    result.seconds = time.perf_counter() - started
    console.rule(f"done in {result.seconds:.0f} s")
    console.print("Review the demo's captions yourself:\n"
                  f"  CATALOGCAP_HOME={home} catalogcap review\n"
                  f"  CATALOGCAP_HOME={home} catalogcap status")
    return result


def _captions_by_name(engine) -> dict[str, dict[str, Caption]]:
    from catalogcap.store.captions import list_captions

    found: dict[str, dict[str, Any]] = {}
    with read_session(engine) as session:
        for row in list_captions(session):
            if row.path:
                found.setdefault(Path(row.path).name, {})[row.kind] = row
    return found


def _show_samples(console: Console, engine, truth: dict[str, Any], title: str, limit: int) -> None:
    table = Table(title=title)
    for column in ("image", "alt text", "description"):
        table.add_column(column, overflow="fold")
    for name, rows in list(sorted(_captions_by_name(engine).items()))[:limit]:
        if name in truth:
            table.add_row(name, rows["alt_text"].text, rows["description"].text)
    console.print(table)


def _show_metrics(console: Console, r) -> None:
    table = Table(title=f"held-out evaluation ({r.val_size} captions; trained on {r.train_size})")
    table.add_column("metric")
    table.add_column("before (base model)", justify="right")
    table.add_column("after (candidate)", justify="right")
    for metric in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
        table.add_row(metric, f"{r.active.get(metric, 0):.3f}", f"{r.candidate.get(metric, 0):.3f}")
    console.print(table)
    colour = "green" if r.promoted else "yellow"
    console.print(f"[{colour}]{'PROMOTED' if r.promoted else 'NOT PROMOTED'}[/{colour}] {r.adapter}: {r.reason}")


def _show_fresh(console: Console, engine, settings: Settings, truth: dict[str, Any]) -> list[dict[str, str]]:
    from catalogcap import images
    from catalogcap.captioner.generate import Captioner
    from catalogcap.captioner.model import get_model

    base = Captioner(get_model(model_id=settings.model, revision=None, device=settings.device,
                               dtype=settings.dtype, adapter_dir=None, adapter_id=None), settings)
    rows = _captions_by_name(engine)
    table = Table(title="fresh images: base model vs. the promoted adapter (what the daemon stored)")
    for column in ("image", "base model", "with adapter", "house style"):
        table.add_column(column, overflow="fold")
    shown = []
    for name, item in sorted(truth.items()):
        if name not in rows:
            continue
        picture = images.load(rows[name]["alt_text"].path, target_size=base.image_size)
        before = base.caption_images([picture])[0]
        stored = rows[name]
        table.add_row(name, before.alt_text, stored["alt_text"].text, item.house("alt_text"))
        shown.append({"image": name, "base": before.alt_text, "adapter": stored["alt_text"].text,
                      "adapter_id": stored["alt_text"].adapter or "", "house": item.house("alt_text"),
                      "description": stored["description"].text})
    console.print(table)
    return shown
