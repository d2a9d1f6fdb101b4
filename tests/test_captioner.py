from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from catalogcap.captioner import Captioner
from catalogcap.captioner.generate import generate_kwargs
from catalogcap.captioner.model import load_model
from catalogcap.errors import ModelLoadError


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (80, 60), c) for c in ("red", "navy", "green")]


def test_one_vision_pass_matches_blip_generate_for_both_kinds(settings) -> None:
    captioner = Captioner.from_settings(settings)
    model, processor = captioner.model, captioner.processor
    results = captioner.caption_images(_images())
    assert len(results) == 3
    for kind in ("alt_text", "description"):
        gen = settings.generation.for_kind(kind)
        prompt = gen.prompt or None
        inputs = processor(images=_images(), text=[prompt] * 3 if prompt else None, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, **generate_kwargs(gen))
        skip = inputs["input_ids"].shape[1] - 1 if prompt else 1
        expected = processor.tokenizer.batch_decode(out[:, skip:], skip_special_tokens=True)
        assert [r.raw[kind] for r in results] == expected


def test_generation_record_has_provenance(settings) -> None:
    captioner = Captioner.from_settings(settings)
    record = captioner.generation_record("description")
    assert record["prompt"] == settings.generation.description.prompt
    assert record["model"] == settings.model and record["adapter"] is None
    assert captioner.generation_record("alt_text")["limit"] == 125


def test_alt_text_respects_limit(settings) -> None:
    settings.alt_text_limit = 16
    captioner = Captioner(Captioner.from_settings(settings).loaded, settings)
    for result in captioner.caption_images(_images()):
        assert len(result.alt_text) <= 16


def test_pickle_only_model_folder_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    for item in tiny_model_dir.iterdir():
        if item.suffix != ".safetensors":
            (folder / item.name).write_bytes(item.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(str(folder))


def test_missing_model_and_offline_hub_id_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match=r"'Example/not-on-this-machine' is not in the local .*HF_HUB_OFFLINE=1"):
        load_model("Example/not-on-this-machine")


def test_lora_adapter_is_merged(tmp_path: Path, settings, tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import BlipForConditionalGeneration

    base = BlipForConditionalGeneration.from_pretrained(tiny_model_dir, use_safetensors=True)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    peft_model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    plain = Captioner.from_settings(settings)
    adapted = Captioner.from_settings(settings, adapter_id="a1", adapter_dir=tmp_path / "adapter")
    assert adapted.adapter_id == "a1"
    assert not any("lora" in name for name, _ in adapted.model.named_parameters())
    pixels = plain.preprocess(_images())
    with torch.inference_mode():
        a = plain.model.vision_model(pixel_values=pixels)[0]
        ids = torch.tensor([[plain.bos_id]])
        la = plain.model.text_decoder(input_ids=ids, encoder_hidden_states=a[:1]).logits
        lb = adapted.model.text_decoder(input_ids=ids, encoder_hidden_states=a[:1]).logits
    assert not torch.allclose(la, lb)
    with pytest.raises(ModelLoadError, match=r"adapter_model\.safetensors"):
        load_model(str(tiny_model_dir), adapter_dir=tmp_path)
