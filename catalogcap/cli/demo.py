"""`catalogcap demo`: the whole loop offline, with the tiny demo model shipped in the package."""

from __future__ import annotations

from pathlib import Path

import click

from catalogcap.cli.app import App, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(demo)


@click.command()
@click.option("--images", type=click.IntRange(20, 5000), default=160, show_default=True,
              help="Catalog size dropped into the watched folder.")
@click.option("--fresh", type=click.IntRange(1, 200), default=8, show_default=True,
              help="New images captioned after training.")
@click.option("--share", type=click.FloatRange(0.1, 1.0), default=0.8, show_default=True,
              help="Share of captions the simulated reviewer decides.")
@click.option("--seed", type=int, default=3, show_default=True, help="Seed of the synthetic catalog.")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Home folder for the demo (default: a new temporary folder, kept afterwards).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary at the end (progress on stderr).")
@pass_app
def demo(app: App, images: int, fresh: int, share: float, seed: int, workdir: Path | None,
         as_json: bool) -> None:
    """Run the whole catalogcap loop offline: watch, caption, review, train, promote.

    Uses a tiny BLIP pretrained on a generic caption style (shipped with catalogcap) and a
    synthetic product catalog whose ground truth lets a simulated reviewer correct the
    captions toward a house style. Your own settings and database are not touched."""
    from catalogcap.demo.run import DemoOptions, run_demo

    model = app.overrides.get("model")
    result = run_demo(DemoOptions(images=images, fresh=fresh, share=share, seed=seed,
                                  home=workdir, model=model), console=app.err)
    if as_json:
        app.json({"home": str(result.home), "captioned": result.captioned, "reviewed": result.reviewed,
                  "round": {k: v for k, v in result.round.items() if k not in ("candidate", "active")},
                  "before": {k: v for k, v in result.round.get("active", {}).items() if isinstance(v, float)},
                  "after": {k: v for k, v in result.round.get("candidate", {}).items() if isinstance(v, float)},
                  "fresh": result.fresh, "seconds": round(result.seconds, 1)})
    if not result.round.get("promoted"):
        raise click.exceptions.Exit(1)
