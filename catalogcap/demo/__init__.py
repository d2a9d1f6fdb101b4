"""The offline demo: a synthetic catalog, a tiny pretrained BLIP shipped with the package,
a simulated reviewer, and `catalogcap demo` running the whole loop."""

from pathlib import Path

DEMO_MODEL = Path(__file__).resolve().parent / "model"
