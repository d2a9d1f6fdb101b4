"""`catalogcap train`, `catalogcap adapters ...` and `catalogcap recaption`."""

from __future__ import annotations

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalogcap.cli.app import App, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(train)
    cli.add_command(adapters)
    cli.add_command(recaption)


@click.command()
@click.option("--dry-run", is_flag=True, help="Print dataset sizes and what would run; train nothing.")
@click.option("--force", is_flag=True, help="Ignore training.min_new_corrections.")
@click.option("--resume", is_flag=True, help="Continue the last interrupted round from its checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the decision.")
@click.option("--epochs", type=int, help="Override training.epochs.")
@click.option("--lr", type=float, help="Override training.lr.")
@click.option("--rank", type=int, help="Override training.rank.")
@click.option("--max-steps", type=int, help="Override training.max_steps.")
@click.option("--batch-size", "train_batch", type=int, help="Override training.batch_size.")
@click.option("--max-minutes", type=float, help="Override training.max_minutes (the round's time budget).")
@click.option("--processes", type=click.IntRange(min=0), help="Override training.processes: train data-parallel in "
              "N processes through accelerate (one per GPU; gloo on CPU); 0: one per GPU.")
@click.option("--trigger", type=click.Choice(["manual", "schedule"]), default="manual", hidden=True)
@pass_app
def train(app: App, dry_run: bool, force: bool, resume: bool, as_json: bool, epochs, lr, rank, max_steps,
          train_batch, max_minutes, processes, trigger: str) -> None:
    """Run one training round now: train a LoRA adapter on reviewed captions (the round sets its
    own step budget and learning rate unless told), evaluate it against the active one on the
    held-out set, and promote it only if it is surely better and gets no more product facts wrong."""
    for key, value in (("epochs", epochs), ("lr", lr), ("rank", rank), ("max_steps", max_steps),
                       ("batch_size", train_batch), ("max_minutes", max_minutes), ("processes", processes)):
        if value is not None:
            app.overrides[f"training.{key}"] = value
    from catalogcap.plugins import hooks_for
    from catalogcap.services.training import train_round

    settings, engine = app.settings, app.engine
    if not dry_run:
        from catalogcap.captioner.model import resolve_model

        resolve_model(settings.model, settings.model_revision)  # fail in seconds, before a run is recorded
    progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=app.err,
                        disable=as_json or not app.err.is_terminal, transient=True)
    task = progress.add_task("train", total=None, loss="-")

    def on_step(step: int, total: int, loss: float) -> None:
        progress.update(task, completed=step, total=total, loss=f"{loss:.3f}")

    with progress:
        result = train_round(engine, settings, hooks_for(app), force=force, resume=resume, dry_run=dry_run,
                             trigger=trigger, on_step=on_step)
    if as_json:
        data = result.to_json()
        for side in ("candidate", "active"):
            data[side] = {k: v for k, v in data[side].items() if k != "samples"}
        app.json(data)
        return
    app.console.print(f"train {result.train_size} / held out {result.val_size} captions of "
                      f"{result.extra.get('val_images', 0)} images (missing images {result.extra.get('missing', 0)}, "
                      f"new reviews {result.extra.get('new_corrections')})")
    if not result.trained:
        app.console.print(result.reason, markup=False)
        return
    policy = result.extra.get("policy", {})
    in_processes = f" in {policy['processes']} processes" if policy.get("processes", 1) > 1 else ""
    app.console.print(f"learning rate {policy.get('lr'):g}, best checkpoint at step {policy.get('steps')} "
                      f"({(policy.get('budget') or {}).get('rule', '')}); {policy.get('seconds')} s{in_processes}",
                      markup=False)
    rows = []
    for metric in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "fact_recall", "fact_error_rate",
                   "alt_text_rule_pass"):
        a, c = result.active.get(metric), result.candidate.get(metric)
        rows.append((metric, "-" if a is None else f"{a:.4f}", "-" if c is None else f"{c:.4f}"))
    active_label = f"active ({result.active_adapter or 'base model'})"
    candidate_label = f"candidate ({result.adapter})"
    app.table(("metric", active_label, candidate_label), rows, title="held-out evaluation",
              right=(active_label, candidate_label))
    low, high = result.extra.get("gate_interval", [0.0, 0.0])
    app.console.print(f"{result.extra.get('gate')} difference, {app.settings.training.gate_confidence:.0%} interval: "
                      f"{low:.4f} .. {high:.4f}", markup=False)
    colour = "green" if result.promoted else "yellow"
    app.console.print(f"[{colour}]{'promoted' if result.promoted else 'not promoted'}[/{colour}]: ", end="")
    app.console.print(result.reason, markup=False)


@click.group()
def adapters() -> None:
    """The adapter registry: list, show, promote, roll back, delete."""


def _adapter_json(a) -> dict:
    return {"id": a.id, "state": a.state, "base_model": a.base_model, "parent": a.parent_id, "path": a.path,
            "created_at": a.created_at.isoformat(),
            "promoted_at": a.promoted_at.isoformat() if a.promoted_at else None,
            "gate": (a.metrics or {}).get("gate"),
            "cider": ((a.metrics or {}).get("candidate") or {}).get("CIDEr")}


@adapters.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def adapters_list(app: App, as_json: bool) -> None:
    """Every adapter, newest first, with its state and held-out CIDEr."""
    from catalogcap.training import registry

    rows = registry.list_all(app.engine)
    if as_json:
        app.json([_adapter_json(a) for a in rows])
        return
    lines = []
    for a in rows:
        d = _adapter_json(a)
        lines.append((a.id, a.state, a.parent_id or "", "-" if d["cider"] is None else f"{d['cider']:.4f}",
                      d["created_at"][:19], (d["promoted_at"] or "")[:19]))
    app.table(("id", "state", "parent", "CIDEr", "created", "promoted"), lines, title=f"{len(rows)} adapters")


@adapters.command("show")
@click.argument("adapter_id")
@pass_app
def adapters_show(app: App, adapter_id: str) -> None:
    """Everything recorded about one adapter (metrics, settings, promotion)."""
    from catalogcap.training import registry

    a = registry.get(app.engine, adapter_id)
    app.json({**_adapter_json(a), "metrics": a.metrics, "config": a.config})


@adapters.command("promote")
@click.argument("adapter_id")
@click.option("--reason", default="manual promotion", show_default=True)
@pass_app
def adapters_promote(app: App, adapter_id: str, reason: str) -> None:
    """Make ADAPTER_ID active now, bypassing the gate (recorded as manual)."""
    from catalogcap.plugins import hooks_for
    from catalogcap.services import adapters as service

    adapter = service.promote(app.engine, hooks_for(app), adapter_id, model=app.settings.model, reason=reason)
    app.console.print(f"adapter {adapter.id} is active")


@adapters.command("rollback")
@pass_app
def adapters_rollback(app: App) -> None:
    """Go back to the adapter that was active before the current one (or the base model)."""
    from catalogcap.plugins import hooks_for
    from catalogcap.services import adapters as service

    result = service.rollback(app.engine, hooks_for(app))
    app.console.print(f"rolled back {result.rolled_back.id}; "
                      f"active: {result.active.id if result.active else 'none (base model)'}")


@adapters.command("delete")
@click.argument("adapter_id")
@pass_app
def adapters_delete(app: App, adapter_id: str) -> None:
    """Delete an adapter's files (never the active one); its record stays for traceability."""
    from catalogcap.services import adapters as service

    service.delete(app.engine, adapter_id)
    app.console.print(f"adapter {adapter_id} deleted")


@click.command()
@click.option("--state", type=click.Choice(["pending"]), default="pending", show_default=True,
              help="Which captions to redo (reviewed ones are never overwritten).")
@click.option("--now/--queue-only", default=True, help="Caption right away, or leave it to `watch`.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def recaption(app: App, state: str, now: bool, as_json: bool) -> None:
    """Caption images whose captions are still pending again, with the active adapter."""
    from catalogcap.plugins import hooks_for
    from catalogcap.services.recaption import recaption as service

    result = service(app.engine, app.settings, hooks_for(app), state=state, now=now)
    if as_json:
        app.json({"queued": result.queued, "captioned": result.captioned})
    else:
        app.console.print(f"{result.queued} image(s) queued, {result.captioned} captioned")
