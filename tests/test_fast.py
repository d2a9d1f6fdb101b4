"""SDPA attention and int8 quantization on a real (tiny, random, offline) BLIP: same outputs as eager."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers.models.blip.modeling_blip import BlipAttention
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

from catalogcap.captioner.fast import (
    SdpaBlipAttention,
    SdpaBlipTextSelfAttention,
    disable_sdpa,
    enable_sdpa,
    quantize_int8,
)
from catalogcap.demo.tiny import build_tiny_blip

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

TOL = 1e-5
PROMPT = "a product photo of"
PAIR = ["a product photo of a red shirt on a white background", "a mug"]


def _sharpen(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw Linear weights at 1/sqrt(fan_in): with BLIP's std 0.02 every attention is near uniform
    and the decoder ignores the image, which would hide scale or mask mistakes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
    return model.eval()


def _images() -> list[Image.Image]:
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    return [Image.fromarray(noise), Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), "blue")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """12 heads of dimension 4, 32 px images, 2 vision + 2 text layers."""
    model, processor = build_tiny_blip(
        tmp_path_factory.mktemp("blip-12-heads"), hidden=48, heads=12, layers=2, image_size=32
    )
    return _sharpen(model, seed=1), processor


@pytest.fixture(scope="module")
def pixels(tiny: tuple[Any, Any]) -> torch.Tensor:
    return tiny[1](images=_images(), return_tensors="pt").pixel_values


def _max_diff(
    a: torch.Tensor | tuple[torch.Tensor, ...], b: torch.Tensor | tuple[torch.Tensor, ...]
) -> float:
    if isinstance(a, torch.Tensor):
        return (a - b).abs().max().item()
    return max(_max_diff(x, y) for x, y in zip(a, b, strict=True))


def _eager_and_sdpa(model: nn.Module, fn: Callable[[nn.Module], Any]) -> tuple[Any, Any]:
    """fn(model) with the eager attention, then with SDPA (restored afterwards)."""
    eager = fn(model)
    assert enable_sdpa(model) > 0
    try:
        return eager, fn(model)
    finally:
        disable_sdpa(model)


def _count_sdpa_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = torch.nn.functional.scaled_dot_product_attention

    def counting(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    return calls


def _training_batch(processor: Any, model: nn.Module, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    texts = [*PAIR, "a blue mug"]
    batch = processor(text=texts, padding=True, return_tensors="pt")
    input_ids = batch.input_ids.clone()
    input_ids[:, 0] = model.config.text_config.bos_token_id
    labels = input_ids.masked_fill(batch.attention_mask == 0, -100)
    return {
        "pixel_values": pixels,
        "input_ids": input_ids,
        "attention_mask": batch.attention_mask,
        "labels": labels,
    }


def test_enable_and_disable_swap_classes(tiny: tuple[Any, Any]) -> None:
    model = copy.deepcopy(tiny[0])
    keys = list(model.state_dict())
    assert enable_sdpa(model) == 2 + 2 * 2  # vision layers + (self, cross) per text layer
    assert enable_sdpa(model) == 0
    kinds = {type(m) for m in model.modules()}
    assert {SdpaBlipAttention, SdpaBlipTextSelfAttention} <= kinds
    assert not {BlipAttention, BlipTextSelfAttention} & kinds
    assert list(model.state_dict()) == keys
    assert disable_sdpa(model) == 6
    kinds = {type(m) for m in model.modules()}
    assert {BlipAttention, BlipTextSelfAttention} <= kinds
    assert not {SdpaBlipAttention, SdpaBlipTextSelfAttention} & kinds


def test_vision_outputs_equal(
    tiny: tuple[Any, Any], pixels: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny[0]
    calls = _count_sdpa_calls(monkeypatch)
    with torch.no_grad():
        eager, fast = _eager_and_sdpa(model, lambda m: m.vision_model(pixel_values=pixels))
    assert calls[0] == 2
    assert _max_diff(eager.last_hidden_state, fast.last_hidden_state) <= TOL
    assert _max_diff(eager.pooler_output, fast.pooler_output) <= TOL


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_decoder_logits_with_padding_equal(
    tiny: tuple[Any, Any], pixels: torch.Tensor, padding_side: str
) -> None:
    model, processor = tiny
    processor.tokenizer.padding_side = padding_side
    try:
        batch = processor(images=_images()[:2], text=PAIR, padding=True, return_tensors="pt")
    finally:
        processor.tokenizer.padding_side = "right"
    assert (batch.attention_mask == 0).any()
    with torch.no_grad():
        eager, fast = _eager_and_sdpa(model, lambda m: m(**batch))
    assert _max_diff(eager.logits, fast.logits) <= TOL


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("prompt", [None, PROMPT])
def test_generate_equal(
    tiny: tuple[Any, Any],
    pixels: torch.Tensor,
    num_beams: int,
    prompt: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, processor = tiny
    text = None if prompt is None else processor(text=[prompt] * 3, return_tensors="pt")

    def generate(m: nn.Module) -> Any:
        extra = (
            {}
            if text is None
            else {"input_ids": text.input_ids.clone(), "attention_mask": text.attention_mask}
        )
        return m.generate(
            pixel_values=pixels,
            num_beams=num_beams,
            max_new_tokens=12,
            min_new_tokens=12,
            output_logits=True,
            return_dict_in_generate=True,
            **extra,
        )

    calls = _count_sdpa_calls(monkeypatch)
    eager, fast = _eager_and_sdpa(model, generate)
    assert calls[0] > 12
    assert eager.sequences.shape[1] >= 12
    assert torch.equal(eager.sequences, fast.sequences)
    assert len({tuple(row) for row in eager.sequences.tolist()}) > 1  # the image matters
    assert _max_diff(tuple(eager.logits), tuple(fast.logits)) <= TOL


def test_kv_cache_used_like_eager(tiny: tuple[Any, Any], pixels: torch.Tensor) -> None:
    """Self-attention keys grow by one per step; cross-attention keys are computed once, then reused."""
    model, processor = tiny
    ids = processor(text=[PROMPT] * 3, return_tensors="pt").input_ids[:, :-1]
    ids[:, 0] = model.config.text_config.bos_token_id

    def two_steps(m: nn.Module) -> tuple[Any, ...]:
        image = m.vision_model(pixel_values=pixels).last_hidden_state
        first = m.text_decoder(input_ids=ids, encoder_hidden_states=image, use_cache=True)
        step = first.logits[:, -1].argmax(-1, keepdim=True)
        second = m.text_decoder(
            input_ids=step, encoder_hidden_states=image, cache=first.cache, use_cache=True
        )
        full = m.text_decoder(input_ids=torch.cat([ids, step], 1), encoder_hidden_states=image)
        cache = second.cache
        lengths = (cache.self_attention_cache.get_seq_length(), cache.cross_attention_cache.get_seq_length())
        return first.logits, second.logits[:, -1], full.logits[:, -1], lengths

    with torch.no_grad():
        eager, fast = _eager_and_sdpa(model, two_steps)
    assert fast[3] == eager[3] == (ids.shape[1] + 1, pixels.shape[-1] ** 2 // 8**2 + 1)
    assert _max_diff(eager[:3], fast[:3]) <= TOL
    assert _max_diff(fast[1], fast[2]) <= TOL  # cached step == recomputing the whole prefix


def _with_lora(model: nn.Module) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"])
    )
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:  # lora_A is drawn from the global RNG otherwise; lora_B is zeros
                param.normal_(0.0, 0.3, generator=generator)
    return peft_model.eval()


def test_lora_equal(tiny: tuple[Any, Any], pixels: torch.Tensor) -> None:
    model, processor = tiny
    peft_model = _with_lora(model)
    batch = processor(images=_images()[:2], text=PAIR, padding=True, return_tensors="pt")
    with torch.no_grad():
        base = model(**batch).logits
        eager, fast = _eager_and_sdpa(peft_model, lambda m: m(**batch).logits)
        assert _max_diff(base, eager) > 1e-2  # the adapter does change the output
        assert _max_diff(eager, fast) <= TOL
        eager, fast = _eager_and_sdpa(
            peft_model, lambda m: m.generate(pixel_values=pixels, max_new_tokens=12, min_new_tokens=12)
        )
    assert torch.equal(eager, fast)


@pytest.mark.parametrize("lora", [False, True])
def test_training_gradients_equal(tiny: tuple[Any, Any], pixels: torch.Tensor, lora: bool) -> None:
    model, processor = tiny
    batch = _training_batch(processor, model, pixels)
    grads: list[dict[str, torch.Tensor]] = []
    for sdpa in (False, True):
        trained = _with_lora(model) if lora else copy.deepcopy(model)
        if sdpa:
            assert enable_sdpa(trained) == 6
        trained.train()
        trained(**batch).loss.backward()
        grads.append({n: p.grad for n, p in trained.named_parameters() if p.requires_grad})
    eager, fast = grads
    assert eager.keys() == fast.keys()
    assert all(g is not None for g in fast.values())
    assert _max_diff(tuple(eager.values()), tuple(fast.values())) <= TOL


def test_attention_dropout_only_in_training(tiny: tuple[Any, Any], pixels: torch.Tensor) -> None:
    model, processor = tiny
    batch = _training_batch(processor, model, pixels)
    batch.pop("labels")
    noisy = copy.deepcopy(model)
    for module in noisy.modules():
        if isinstance(module, (BlipAttention, BlipTextSelfAttention)):
            module.dropout.p = 0.5
    enable_sdpa(noisy)
    with torch.no_grad():
        assert _max_diff(noisy(**batch).logits, model(**batch).logits) <= TOL
        noisy.train()
        assert _max_diff(noisy(**batch).logits, noisy(**batch).logits) > 1e-3


def test_output_attentions_falls_back_to_eager(
    tiny: tuple[Any, Any], pixels: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, processor = tiny
    batch = processor(images=_images()[:2], text=PAIR, padding=True, return_tensors="pt")

    def attentions(m: nn.Module) -> tuple[torch.Tensor, ...]:
        out = m(**batch, output_attentions=True)
        text = m.text_decoder(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            encoder_hidden_states=out.image_embeds,
            output_attentions=True,
        )
        return (*out.attentions, *text.attentions, *text.cross_attentions)

    calls = _count_sdpa_calls(monkeypatch)
    with torch.no_grad():
        eager, fast = _eager_and_sdpa(model, attentions)
    assert calls[0] == 0
    assert len(fast) == 6
    assert _max_diff(eager, fast) == 0.0


def test_direct_module_call_returns_weights_on_request(tiny: tuple[Any, Any]) -> None:
    attention = copy.deepcopy(tiny[0].vision_model.encoder.layers[0].self_attn)
    hidden = torch.randn(2, 17, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager, weights = attention(hidden)
        assert enable_sdpa(attention) == 1
        fast, none = attention(hidden)
        _, fallback_weights = attention(hidden, output_attentions=True)
    assert none is None
    assert torch.equal(weights, fallback_weights)
    assert _max_diff(eager, fast) <= TOL


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    model, processor = build_tiny_blip(
        tmp_path_factory.mktemp("blip-int8"), hidden=96, heads=12, layers=4, image_size=32
    )
    return _sharpen(model, seed=3), processor


def test_int8_generates_close_to_fp32(
    larger: tuple[Any, Any], record_property: Callable[[str, Any], None], capsys: pytest.CaptureFixture[str]
) -> None:
    model, processor = larger
    batch = processor(images=_images(), text=[PROMPT] * 3, return_tensors="pt")
    quantized = quantize_int8(model)
    assert quantized is not model
    assert not any(type(m) is nn.Linear for m in quantized.modules())
    assert any(type(m) is nn.Linear for m in model.modules())
    with torch.no_grad():
        reference = model(**batch).logits.flatten()
        logits = quantized(**batch).logits.flatten()
        cosine = torch.nn.functional.cosine_similarity(reference, logits, dim=0).item()
        fp32 = model.generate(pixel_values=batch.pixel_values, max_new_tokens=12, min_new_tokens=12)
        int8 = quantized.generate(pixel_values=batch.pixel_values, max_new_tokens=12, min_new_tokens=12)
        eager, fast = _eager_and_sdpa(
            quantized,
            lambda m: m.generate(pixel_values=batch.pixel_values, max_new_tokens=12, min_new_tokens=12),
        )
    agreement = (fp32 == int8).float().mean().item()
    record_property("int8_token_agreement", agreement)
    record_property("int8_logits_cosine", cosine)
    with capsys.disabled():
        print(f"\nint8 vs fp32: logits cosine {cosine:.5f}, greedy token agreement {agreement:.1%}")
    assert int8.shape == fp32.shape
    assert cosine > 0.99
    assert torch.equal(eager, fast)  # SDPA on top of int8 changes nothing either


def test_works_on_a_loaded_model(tmp_path: Path) -> None:
    """enable_sdpa works on a model freshly loaded with from_pretrained (not only on the built object)."""
    from transformers import BlipForConditionalGeneration

    model, _ = build_tiny_blip(tmp_path, hidden=48, heads=12, image_size=32)
    loaded = BlipForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert enable_sdpa(loaded) == 6
    with torch.no_grad():
        pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        assert torch.equal(
            model.eval().generate(pixel_values=pixels, max_new_tokens=5),
            loaded.generate(pixel_values=pixels, max_new_tokens=5),
        )
