"""Captions conditioned on product data: per-image prompts with the real tiny BLIP, the worker's
provenance and profiles, the one-shot CLI, and the prompts training examples are built with."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from sqlmodel import select

from catalogcap.captioner import Captioner
from catalogcap.captioner.generate import _requests
from catalogcap.products.context import fold
from catalogcap.products.prompts import ImageRequest
from catalogcap.settings import load_settings
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import AssetPath, Caption, Product
from tests.conftest import make_image

T = "{brand} {category},"
LAMP = {"brand": "NordLight", "category": "lamp"}


def _greedy(settings, alt_prompt: str = T):
    settings.generation.alt_text.prompt = alt_prompt
    settings.generation.alt_text.num_beams = 1
    settings.generation.description.num_beams = 1
    return settings


def _pictures(seed: int, n: int) -> list[Image.Image]:
    rng = random.Random(seed)
    return [Image.new("RGB", (64, 48), tuple(rng.randrange(256) for _ in range(3))) for _ in range(n)]


@pytest.fixture(scope="module")
def shared_model(tiny_model_dir):
    from catalogcap.captioner.model import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouping_by_prompt_equals_captioning_each_image_alone(settings, shared_model, seed) -> None:
    captioner = Captioner(shared_model, _greedy(settings))
    assert captioner.per_image
    rng = random.Random(seed)
    contexts = [LAMP, {"category": "chair"}, {}, LAMP, {"brand": "Öko", "category": "rug"}, {}]
    rng.shuffle(contexts)
    requests = [ImageRequest(f"/p/{i}.jpg", c) for i, c in enumerate(contexts)]
    pictures = _pictures(seed, len(requests))
    calls: list[int] = []
    original = captioner._generate

    def counting(group, embeds):
        calls.append(embeds.shape[0])
        return original(group, embeds)

    captioner._generate = counting  # type: ignore[method-assign]
    together = captioner.caption_images(pictures, requests)
    # 4 distinct alt-text prompts ("NordLight lamp,", "chair,", "", "Öko rug,"); the description
    # prompt is the same for all: one call of 6 images, never one call per image
    assert sorted(calls) == sorted([2, 1, 2, 1, 6])
    alone = [captioner.caption_images([p], [r])[0] for p, r in zip(pictures, requests)]
    assert [r.texts for r in together] == [r.texts for r in alone]
    assert [r.raw for r in together] == [r.raw for r in alone]
    for result, context in zip(together, contexts):
        alt = result.alt_text
        if context == LAMP:
            assert alt.startswith("NordLight lamp,") and result.prompts["alt_text"].keep
        elif context.get("brand") == "Öko":
            assert alt.startswith("Öko rug,")
        elif context:
            assert alt.startswith("Chair,")
        assert "None" not in alt and not alt.startswith((",", " ")) and "  " not in alt


def test_without_fields_the_fixed_fast_path_is_taken_and_unchanged(settings, shared_model) -> None:
    plain = Captioner(shared_model, settings)
    assert not plain.per_image
    pictures = _pictures(5, 3)
    before = plain.caption_images(pictures)
    ignored = plain.caption_images(pictures, [ImageRequest("/x.jpg", LAMP)] * 3)  # nothing to render
    assert [r.texts for r in before] == [r.texts for r in ignored]
    assert all(r.profile is None and r.prompts == {} for r in before)
    # a field template on an image without context: the same caption as no prompt at all
    settings.generation.alt_text.prompt = T
    templated = Captioner(shared_model, settings)
    assert [r.texts for r in templated.caption_images(pictures, [ImageRequest()] * 3)] == [r.texts for r in before]
    assert [r.provenance("alt_text") for r in templated.caption_images(pictures)] == [{}] * 3


def test_a_prefix_over_the_alt_text_limit_falls_back_to_unprompted(settings, shared_model) -> None:
    settings.alt_text_limit = 20
    captioner = Captioner(shared_model, _greedy(settings))
    long = {"brand": "NordLight Scandinavian Lighting", "category": "lamp"}
    result, = captioner.caption_images(_pictures(3, 1), [ImageRequest("/a.jpg", long)])
    unprompted, = captioner.caption_images(_pictures(3, 1), [ImageRequest("/a.jpg", {})])
    assert result.alt_text == unprompted.alt_text and len(result.alt_text) <= 20
    provenance = result.provenance("alt_text")
    assert provenance["prompt"] == "" and "over alt_text_limit 20" in provenance["fallback"]
    short, = captioner.caption_images(_pictures(3, 1), [ImageRequest("/a.jpg", LAMP)])
    assert short.alt_text.startswith("NordLight lamp") and len(short.alt_text) <= 20


def _store_image(engine, settings, path: Path, color: str, **fields) -> int:
    from catalogcap.intake import register_file

    make_image(path, color)
    asset_id = register_file(engine, path, settings).asset_id
    if fields:
        with write_session(engine) as session:
            session.add(Product(key=f"csv:{path.name}", source="csv", file=path.name, file_folded=fold(path.name),
                                **fields))
    return asset_id


def _captions(engine) -> dict[tuple[int, str], Caption]:
    with read_session(engine) as session:
        return {(c.asset_id, c.kind): c for c in session.exec(select(Caption)).all()}


def test_the_worker_stores_the_prefix_in_catalog_casing_with_provenance(home, tmp_path) -> None:
    from catalogcap.store.database import create_store_engine
    from catalogcap.worker import Worker

    settings = _greedy(load_settings())
    engine = create_store_engine(settings.db_url)
    lamp = _store_image(engine, settings, tmp_path / "photos" / "lamp-01.jpg", "red", brand="NordLight",
                        category="lamp")
    bare = _store_image(engine, settings, tmp_path / "photos" / "unknown.jpg", "blue")
    worker = Worker(engine, settings)
    try:
        assert worker.drain().captioned == 2
    finally:
        worker.close()
    captions = _captions(engine)
    alt = captions[(lamp, "alt_text")]
    assert alt.text.startswith("NordLight lamp,") and alt.model_text == alt.text
    assert alt.context["fields"] == LAMP and alt.context["template"] == T
    assert alt.context["prompt"] == "NordLight lamp," and alt.context["sources"][0]["source"] == "csv"
    assert alt.profile is None and len(alt.text) <= settings.alt_text_limit
    plain = captions[(bare, "alt_text")]
    assert plain.context == {} and plain.text and "None" not in plain.text
    assert not plain.text.startswith((",", " ")) and "," not in plain.text[:2]
    unprompted = Captioner.from_settings(load_settings({"generation.alt_text.num_beams": 1}))
    path = tmp_path / "photos" / "unknown.jpg"
    assert plain.text == dict(unprompted.caption_files([path]))[path].alt_text
    # the description's prompt has no fields: stripped as before; it keeps the image's product
    # data for the consistency checks, but no template or prompt it did not use
    described = captions[(lamp, "description")].context
    assert described["fields"] == LAMP and "template" not in described and "prompt" not in described
    engine.dispose()


def test_profiles_per_folder_carry_their_name_and_prompt(home, tmp_path) -> None:
    from catalogcap.store.database import create_store_engine
    from catalogcap.worker import Worker

    (home / "catalogcap.toml").write_text(f"""
[[profiles]]
name = "shoes"
folders = ["**/shoes/*"]
generation.alt_text.prompt = "{{brand}} shoe,"
generation.alt_text.num_beams = 1

[[profiles]]
name = "lamps"
folders = ["**/lamps/*"]
alt_text_limit = 60
generation.alt_text.prompt = "{T}"
generation.description.max_new_tokens = 5
""")
    settings = load_settings()
    engine = create_store_engine(settings.db_url)
    shoe = _store_image(engine, settings, tmp_path / "c" / "shoes" / "s1.jpg", "red", brand="Pedal", category="shoe")
    lamp = _store_image(engine, settings, tmp_path / "c" / "lamps" / "l1.jpg", "blue", brand="NordLight",
                        category="lamp")
    other = _store_image(engine, settings, tmp_path / "c" / "misc" / "m1.jpg", "green", brand="Nobody")
    worker = Worker(engine, settings)
    try:
        assert worker.drain().captioned == 3
    finally:
        worker.close()
    captions = _captions(engine)
    assert captions[(shoe, "alt_text")].profile == "shoes"
    assert captions[(shoe, "alt_text")].text.startswith("Pedal shoe,")
    assert captions[(shoe, "alt_text")].generation["num_beams"] == 1
    assert captions[(shoe, "alt_text")].generation["profile"] == "shoes"
    assert captions[(shoe, "alt_text")].context["template"] == "{brand} shoe,"
    assert captions[(shoe, "alt_text")].context["prompt"] == "Pedal shoe,"
    assert captions[(lamp, "alt_text")].context["template"] == T
    assert captions[(shoe, "description")].profile == "shoes"
    assert captions[(lamp, "alt_text")].profile == "lamps"
    assert captions[(lamp, "alt_text")].text.startswith("NordLight lamp,")
    assert captions[(lamp, "alt_text")].generation["limit"] == 60
    assert captions[(lamp, "description")].generation["max_new_tokens"] == 5
    # no profile, a prompt without fields: no provenance, only the product data for the checks
    assert captions[(other, "alt_text")].profile is None
    assert captions[(other, "alt_text")].context == {"fields": {"brand": "Nobody"}, "sources": [
        {"source": "csv", "key": "csv:m1.jpg", "origin": None}]}
    assert captions[(other, "alt_text")].generation.get("profile") is None
    engine.dispose()


def test_caption_cli_uses_the_stores_context_and_field_options(home, tmp_path) -> None:
    from catalogcap.cli import cli
    from catalogcap.store.database import create_store_engine

    (home / "catalogcap.toml").write_text(f'[generation.alt_text]\nprompt = "{T}"\n')
    settings = load_settings()
    engine = create_store_engine(settings.db_url)
    known = tmp_path / "photos" / "lamp-01.jpg"
    _store_image(engine, settings, known, "red", brand="NordLight", category="lamp")
    engine.dispose()
    stranger = make_image(tmp_path / "elsewhere" / "x.jpg", "blue")
    runner = CliRunner()
    result = runner.invoke(cli, ["caption", "--json", str(known)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    import json

    assert json.loads(result.stdout)[0]["alt_text"].startswith("NordLight lamp,")
    result = runner.invoke(cli, ["caption", "--json", "--field", "brand=Pedal", "--field", "category=boot",
                                 str(stranger)], catch_exceptions=False)
    assert json.loads(result.stdout)[0]["alt_text"].startswith("Pedal boot,")
    bad = runner.invoke(cli, ["caption", "--field", "x.y=1", str(stranger)])
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.output


def test_training_examples_use_the_rendered_prompt_and_its_continuation(home, tmp_path) -> None:
    from catalogcap.store.database import create_store_engine
    from catalogcap.training.batches import encode_targets
    from catalogcap.training.dataset import Dataset, Example
    from catalogcap.training.round import example_prompts

    (home / "catalogcap.toml").write_text(f"""
[generation.alt_text]
prompt = "{T}"
[[profiles]]
name = "rugs"
folders = ["**/rugs/*"]
generation.alt_text.prompt = "{{title}}:"
""")
    settings = load_settings()
    engine = create_store_engine(settings.db_url)
    lamp = _store_image(engine, settings, tmp_path / "p" / "lamp.jpg", "red", brand="NordLight", category="lamp")
    rug = _store_image(engine, settings, tmp_path / "p" / "rugs" / "rug.jpg", "blue", title="Aurora Rug")
    bare = _store_image(engine, settings, tmp_path / "p" / "bare.jpg", "green")
    with read_session(engine) as session:
        path_of = {r.asset_id: r.path for r in session.exec(select(AssetPath)).all()}

    def example(n: int, asset: int, kind: str, text: str) -> Example:
        return Example(n, 1, asset, f"fp{asset}", kind, text, path_of[asset])

    data = Dataset(train=[example(1, lamp, "alt_text", "NordLight lamp, red with a striped shade"),
                          example(2, lamp, "alt_text", "A red lamp by NordLight"),  # a reviewer rewrote it
                          example(3, rug, "alt_text", "Aurora Rug: blue wool"),
                          example(4, bare, "alt_text", "A green box"),
                          example(5, lamp, "description", "A red lamp.")],
                   val=[example(6, bare, "description", "A green box.")])
    prompts = example_prompts(engine, settings, data)
    pairs = [prompts.for_example(e) for e in data.train]
    assert pairs == [("NordLight lamp,", "red with a striped shade"), ("", "A red lamp by NordLight"),
                     ("Aurora Rug:", "blue wool"), ("", "A green box"), ("a product photo of", "A red lamp.")]
    assert prompts.unprompted == 1
    assert prompts.request(data.train[0]) == ImageRequest(path_of[lamp], LAMP)
    assert prompts.contexts_by_path(data.val) == {Path(path_of[bare]): {}}
    # the prompt's tokens are masked: the model is trained on the continuation only
    captioner = Captioner.from_settings(settings)
    tokenizer, cfg = captioner.tokenizer, captioner.model.config.text_config
    batch = encode_targets(tokenizer, [p for p, _ in pairs[:1]], [t for _, t in pairs[:1]],
                           bos_id=cfg.bos_token_id, pad_id=cfg.pad_token_id)
    n_prompt = len(tokenizer("NordLight lamp,").input_ids) - 1
    assert (batch["labels"][0, :n_prompt] == -100).all() and (batch["labels"][0, n_prompt:] != -100).any()
    engine.dispose()


def test_requests_must_match_the_batch() -> None:
    with pytest.raises(ValueError):
        _requests([ImageRequest()], 2, 0)
    assert len(_requests(None, 3, 0)) == 3


def test_training_steps_dev_scoring_and_the_gates_captions_use_each_images_prompt(home, tmp_path,
                                                                                  monkeypatch) -> None:
    """Two real LoRA steps on per-example prompts; the dev split and the held-out captions are
    made with the same rendered prompts (the prefix is in the gate's captions)."""
    from catalogcap.captioner.model import load_model
    from catalogcap.training import trainer as trainer_module
    from catalogcap.training.dataset import Example
    from catalogcap.training.evaluate import caption_examples
    from catalogcap.training.prompting import ExamplePrompts

    (home / "catalogcap.toml").write_text(f'[generation.alt_text]\nprompt = "{T}"\n')
    settings = _greedy(load_settings(), T)
    settings.training.lr, settings.training.max_steps, settings.training.evals_per_run = 2e-3, 2, 1
    settings.training.dev_percent = 40
    examples, fields = [], {}
    for i in range(8):
        path = make_image(tmp_path / f"img{i}.png", ("red", "blue")[i % 2], size=(60 + i, 48))
        fields[i] = LAMP if i % 2 else {}
        examples.append(Example(i, 1, i, f"fp{i}", "alt_text",
                                "NordLight lamp, blue shade" if i % 2 else "A red box", str(path)))
    prompts = ExamplePrompts(settings, fields)
    seen: list[tuple[list[str], list[str]]] = []
    original = trainer_module.encode_targets

    def recording(tokenizer, prompt_list, texts, **kwargs):
        seen.append((list(prompt_list), list(texts)))
        return original(tokenizer, prompt_list, texts, **kwargs)

    monkeypatch.setattr(trainer_module, "encode_targets", recording)
    dev_requests: list[ImageRequest] = []
    scoring = Captioner.caption_embeddings

    def dev(self, embeds, requests=None):
        dev_requests.extend(requests or [])
        return scoring(self, embeds, requests)

    monkeypatch.setattr(Captioner, "caption_embeddings", dev)
    base = load_model(settings.model, device="cpu", dtype="float32")
    (tmp_path / "run").mkdir()
    result = trainer_module.train(lambda: load_model(settings.model, device="cpu", dtype="float32").model,
                                  base.processor, examples, settings, tmp_path / "run", prompts=prompts)
    assert result.steps == 2 and result.dev_images > 0
    pairs = {pair for prompt_list, texts in seen for pair in zip(prompt_list, texts)}
    assert pairs and pairs <= {("NordLight lamp,", "blue shade"), ("", "A red box")}
    assert dev_requests and {r.path: dict(r.fields) for r in dev_requests} == {
        e.path: fields[e.asset_id] for e in examples if e.path in {r.path for r in dev_requests}}
    tuned = Captioner(load_model(settings.model, device="cpu", dtype="float32", adapter_dir=result.adapter_dir,
                                 adapter_id="t"), settings)
    outputs = caption_examples(tuned, examples, prompts)
    assert all(outputs[f"fp{i}"]["alt_text"].startswith("NordLight lamp,") == bool(i % 2) for i in range(8))


def test_the_batch_probe_covers_every_profiles_budget(settings, shared_model) -> None:
    plain = Captioner(shared_model, settings)
    assert len(plain.prompt_groups(full_length=True)) == len(plain.prompt_groups())
    from catalogcap.settings import Profile

    profiled = settings.model_copy(update={"profiles": [Profile(name="long", folders=["**/long/*"], generation={
        "alt_text": {"max_new_tokens": 40, "num_beams": 4}})]})
    captioner = Captioner(shared_model, profiled)
    budgets = {(g.kwargs["max_new_tokens"], g.kwargs["num_beams"]) for g in captioner.prompt_groups(full_length=True)}
    assert (40, 4) in budgets and all(g.kwargs["max_new_tokens"] != 40 for g in captioner.prompt_groups())
    assert captioner.batch_key() != plain.batch_key() and "long=alt_text:40x4" in captioner.batch_key()


def test_the_worker_captions_with_a_plugins_product_fields(home, tmp_path, monkeypatch) -> None:
    """A PIM plugin's `product_context` fields reach the prompt and the stored provenance."""
    from catalogcap.plugins import hookimpl
    from catalogcap.plugins.manager import make_manager
    from catalogcap.store.database import create_store_engine
    from catalogcap.worker import Worker

    class Pim:
        @hookimpl
        def product_context(self, path):
            return {"brand": "Lumière", "category": "lamp"} if path.endswith("pim-lamp.jpg") else None

    pm = make_manager([])
    pm.register(Pim(), name="pim")
    monkeypatch.setattr("catalogcap.products.hooks.default_manager", lambda: pm)
    settings = _greedy(load_settings())
    engine = create_store_engine(settings.db_url)
    lamp = _store_image(engine, settings, tmp_path / "photos" / "pim-lamp.jpg", "red")
    other = _store_image(engine, settings, tmp_path / "photos" / "other.jpg", "blue")
    worker = Worker(engine, settings)
    try:
        assert worker.drain().captioned == 2
    finally:
        worker.close()
    captions = _captions(engine)
    alt = captions[(lamp, "alt_text")]
    assert alt.text.startswith("Lumière lamp,"), alt.text
    assert alt.context["fields"] == {"brand": "Lumière", "category": "lamp"}
    assert alt.context["sources"][0] == {"source": "plugin", "key": f"plugin:{lamp}", "origin": "pim"}
    assert captions[(other, "alt_text")].context == {}
    engine.dispose()


def test_without_field_templates_the_catalogs_data_is_kept_for_the_checks(home, tmp_path) -> None:
    """The default prompts name no field: captions still carry the product data their image had,
    so consistency warnings can compare them (and never a template they did not use)."""
    from catalogcap.store.database import create_store_engine
    from catalogcap.worker import Worker

    settings = load_settings()
    engine = create_store_engine(settings.db_url)
    lamp = _store_image(engine, settings, tmp_path / "photos" / "lamp-02.jpg", "red", brand="NordLight",
                        category="lamp", material="brass")
    worker = Worker(engine, settings)
    try:
        assert worker.drain().captioned == 1
    finally:
        worker.close()
    for kind in ("alt_text", "description"):
        context = _captions(engine)[(lamp, kind)].context
        assert context["fields"] == {"brand": "NordLight", "category": "lamp", "material": "brass"}
        assert "template" not in context and context["sources"][0]["source"] == "csv"
    engine.dispose()
