"""The parts of a training round that need no training: the step budget, the dev split, the
fact vocabulary learnt from reviews, the gate's interval, one image pipeline, the
embedding cache and a round's refusal on too little evidence."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from catalogcap.settings import TrainingSettings, load_settings
from catalogcap.training.evaluate import Evaluation, paired_interval
from catalogcap.training.facts import FactVocabulary
from catalogcap.training.policy import Budget, split_dev


def test_budget_scales_with_the_data_and_explicit_settings_win() -> None:
    cfg = TrainingSettings()
    small, large, huge = (Budget.plan(n, cfg) for n in (200, 2_400, 400_000))
    assert small.steps == cfg.min_steps  # 13 steps a pass: the floor decides
    assert large.steps == 150 * cfg.epochs_budget  # 150 steps a pass, 20 passes
    assert huge.steps == cfg.max_auto_steps  # a part of one pass
    assert small.lrs == cfg.lr_candidates and len(small.lrs) >= 2
    assert small.eval_every * cfg.evals_per_run >= small.steps
    fixed = Budget.plan(380, TrainingSettings(epochs=3, lr=1e-3))
    assert (fixed.steps, fixed.lrs) == (72, [1e-3])
    assert Budget.plan(380, TrainingSettings(max_steps=17, epochs=3)).steps == 17


def test_dev_split_is_seeded_stable_and_bounded() -> None:
    fps = [f"fp{i}" for i in range(400)]
    cfg = TrainingSettings()
    dev = split_dev(fps, cfg)
    assert dev == split_dev(list(reversed(fps)), cfg)
    assert len(dev) == round(400 * cfg.dev_percent / 100)
    assert split_dev(fps, TrainingSettings(seed=1)) != dev
    assert len(split_dev([f"x{i}" for i in range(5000)], cfg)) == cfg.max_dev_images
    assert split_dev(fps[:5], cfg) == set()  # too few images to hold any back


def _catalog_texts(rng: random.Random, n: int) -> list[tuple[str, dict[str, str]]]:
    # made-up words on purpose: nothing may come from an English list
    colours = ["zorbl", "navy", "quell", "olive", "umber"]
    stuffs = ["flax", "wexen", "jute"]
    things = ["trug", "kettle", "plimb", "satchel"]
    out = []
    for _ in range(n):
        fact = {"colour": rng.choice(colours), "stuff": rng.choice(stuffs), "thing": rng.choice(things)}
        out.append((f"{fact['colour'].title()} {fact['stuff']} {fact['thing']} for the home", fact))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fact_vocabulary_is_learnt_from_the_reviews(seed: int) -> None:
    rng = random.Random(seed)
    reviews = _catalog_texts(rng, 120)
    vocabulary = FactVocabulary.learn(text for text, _ in reviews)
    kinds = {frozenset(kind) for kind in vocabulary.kinds}
    assert frozenset({"zorbl", "navy", "quell", "olive", "umber"}) in kinds
    assert frozenset({"flax", "wexen", "jute"}) in kinds
    assert frozenset({"trug", "kettle", "plimb", "satchel"}) in kinds
    assert not any({"for", "the", "home"} & kind for kind in kinds)  # in every caption: no fact

    text, fact = reviews[0]
    other = next(c for c in ["zorbl", "navy", "quell"] if c != fact["colour"])
    right = vocabulary.compare([(text, text)])
    assert right["fact_recall"] == 1.0 and right["fact_errors"] == 0.0 and right["fact_exact"] == 1.0
    wrong = vocabulary.compare([(text.replace(fact["colour"].title(), other), text)])
    assert wrong["fact_errors"] == 1.0 and wrong["fact_recall"] == pytest.approx(2 / 3)
    assert wrong["fact_error_rate"] == pytest.approx(1 / 3)
    silent = vocabulary.compare([(f"{fact['thing']}", text)])
    assert silent["fact_errors"] == 0.0 and silent["fact_recall"] == pytest.approx(1 / 3)
    # a word of a kind the reference does not name contradicts nothing
    assert vocabulary.compare([("navy trug", "trug")])["fact_errors"] == 0.0


def _evaluation(diffs: list[float], base: float = 1.0) -> tuple[Evaluation, Evaluation]:
    keys = [f"img{i}:alt_text" for i in range(len(diffs))]
    image_of = {k: k.split(":")[0] for k in keys}
    cand = Evaluation({}, {"CIDEr": {k: base + d for k, d in zip(keys, diffs)}}, image_of)
    act = Evaluation({}, {"CIDEr": dict.fromkeys(keys, base)}, image_of)
    return cand, act


def test_gate_interval_brackets_the_difference_and_widens_with_noise() -> None:
    rng = random.Random(3)
    steady, _ = _evaluation([2.0 + rng.uniform(-0.1, 0.1) for _ in range(40)])
    noisy, _ = _evaluation([2.0 + rng.uniform(-4, 4) for _ in range(40)])
    base = _evaluation([0.0] * 40)[1]
    lo, hi = paired_interval(steady, base, "CIDEr", seed=1)
    assert 1.9 < lo < 2.0 < hi < 2.1
    lo2, hi2 = paired_interval(noisy, base, "CIDEr", seed=1)
    assert hi2 - lo2 > 5 * (hi - lo)
    lucky, base1 = _evaluation([3.0])  # one image: no evidence, whatever its score
    assert paired_interval(lucky, base1, "CIDEr") == (3.0, 3.0)
    assert paired_interval(steady, base, "CIDEr", seed=1) == (lo, hi)  # seeded


def test_one_image_pipeline_for_serving_training_and_evaluation(tmp_path: Path, tiny_model_dir: Path,
                                                                 monkeypatch) -> None:
    """A large JPEG becomes the same tensor in the captioner (serving and the gate's evaluation)
    and in the trainer, and the trainer's cached embeddings are the encoder's output for it."""
    from catalogcap.captioner import Captioner
    from catalogcap.training.dataset import Example
    from catalogcap.training.imagecache import EmbeddingCache
    from catalogcap.training.trainer import _Trainer

    photo = tmp_path / "big.jpg"
    gradient = Image.linear_gradient("L").resize((2400, 1800))
    Image.merge("RGB", (gradient, gradient.rotate(90, expand=False), gradient.transpose(0))).save(photo, quality=92)
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CATALOGCAP_MODEL", str(tiny_model_dir))
    settings = load_settings()
    captioner = Captioner.from_settings(settings)
    served = captioner.load_pixels(photo)
    examples = [Example(1, 1, 1, "fp-big", "alt_text", "x", str(photo))]
    trainer = _Trainer(lambda: captioner.model, captioner.processor, examples, settings, tmp_path / "run",
                       prompts={"alt_text": "", "description": ""}, deadline=None, on_step=None)
    trained = trainer.load(str(photo))
    assert served.shape == trained.shape == (3, captioner.image_size, captioner.image_size)
    assert torch.equal(served, trained)
    # the gate's evaluation reads files through the very same object the daemon's worker uses
    assert captioner.load_pixels.__func__ is Captioner.load_pixels
    cache = EmbeddingCache(tmp_path / "run" / "embeds")
    vision = captioner.model.vision_model

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return vision(pixel_values=pixels)[0]

    cache.build(encode, {"fp-big": str(photo), "fp-gone": str(tmp_path / "gone.jpg")}, trainer.load)
    with torch.no_grad():
        direct = vision(pixel_values=served[None])[0]
    reopened = EmbeddingCache(cache.folder).open()
    assert torch.equal(reopened.rows(["fp-big"]), direct)
    assert "fp-gone" in reopened.failed and "fp-gone" not in reopened.index
