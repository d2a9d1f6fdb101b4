"""Captioning a batch of images into both kinds with one vision pass.

BLIP's `generate` runs the vision encoder on every call; we need two captions per image
(alt text, description), so the image embeddings are computed once and the text decoder
generates each kind from them. Prompts are handled exactly like BLIP's own `generate`
(and like training): tokenized as [CLS] prompt [SEP], first id swapped to bos, the
trailing [SEP] dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catalogcap.captioner.model import LoadedModel, get_model
from catalogcap.captioner.text import clean_alt_text, clean_description
from catalogcap.settings import KINDS, GenerationSettings, Settings


@dataclass(frozen=True)
class CaptionSet:
    """The cleaned captions of one image, and what the model literally produced."""

    texts: dict[str, str]
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def alt_text(self) -> str:
        return self.texts["alt_text"]

    @property
    def description(self) -> str:
        return self.texts["description"]


def prompt_ids(tokenizer: Any, prompt: str, bos_token_id: int):
    """Decoder input ids for a prompt, the way BLIP generates (and the trainer trains)."""
    import torch

    if not prompt:
        return torch.tensor([[bos_token_id]], dtype=torch.long)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    ids[:, 0] = bos_token_id
    return ids[:, :-1]


def generate_kwargs(gen: GenerationSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": gen.max_new_tokens,
        "min_new_tokens": gen.min_new_tokens,
        "num_beams": gen.num_beams,
        "do_sample": False,
        "repetition_penalty": gen.repetition_penalty,
        "no_repeat_ngram_size": gen.no_repeat_ngram_size,
    }
    if gen.num_beams > 1:
        kwargs.update(length_penalty=gen.length_penalty, early_stopping=True)
    return kwargs


class Captioner:
    """A loaded BLIP (with its merged adapter) plus the generation settings per kind."""

    def __init__(self, loaded: LoadedModel, settings: Settings) -> None:
        self.loaded = loaded
        self.settings = settings
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        text_config = self.model.config.text_config
        self.bos_id = text_config.bos_token_id
        self.sep_id = text_config.sep_token_id
        self.pad_id = text_config.pad_token_id
        self._prompt_ids = {
            kind: prompt_ids(self.tokenizer, settings.generation.for_kind(kind).prompt, self.bos_id).to(
                loaded.device
            )
            for kind in KINDS
        }

    @classmethod
    def from_settings(cls, settings: Settings, *, adapter_id: str | None = None, adapter_dir=None) -> Captioner:
        loaded = get_model(
            model_id=settings.model,
            revision=settings.model_revision,
            device=settings.device,
            dtype=settings.dtype,
            adapter_dir=adapter_dir,
            adapter_id=adapter_id,
        )
        return cls(loaded, settings)

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    @property
    def adapter_id(self) -> str | None:
        return self.loaded.adapter_id

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def generation_record(self, kind: str) -> dict[str, Any]:
        """What is stored with each caption: enough to reproduce it."""
        gen = self.settings.generation.for_kind(kind)
        record = gen.model_dump()
        record.update(model=self.model_id, revision=self.settings.model_revision, adapter=self.adapter_id,
                      dtype=str(self.loaded.dtype).removeprefix("torch."))
        if kind == "alt_text":
            record["limit"] = self.settings.alt_text_limit
        return record

    def preprocess(self, images: list[Any]):
        """PIL images (RGB, upright) -> the model's normalised pixel tensor."""
        return self.processor.image_processor(images=images, return_tensors="pt").pixel_values

    def caption_images(self, images: list[Any]) -> list[CaptionSet]:
        if not images:
            return []
        return self.caption_pixels(self.preprocess(images))

    def caption_pixels(self, pixel_values) -> list[CaptionSet]:
        import torch

        with torch.inference_mode():
            pixel_values = pixel_values.to(self.loaded.device, dtype=self.loaded.dtype, non_blocking=True)
            image_embeds = self.model.vision_model(pixel_values=pixel_values)[0]
            raw = {kind: self._generate(kind, image_embeds) for kind in KINDS}
        results = []
        for i in range(pixel_values.shape[0]):
            texts = {
                "alt_text": clean_alt_text(raw["alt_text"][i], limit=self.settings.alt_text_limit),
                "description": clean_description(raw["description"][i]),
            }
            results.append(CaptionSet(texts=texts, raw={kind: raw[kind][i] for kind in KINDS}))
        return results

    def _generate(self, kind: str, image_embeds) -> list[str]:
        import torch

        batch = image_embeds.shape[0]
        input_ids = self._prompt_ids[kind].expand(batch, -1).clone()
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.model.text_decoder.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            eos_token_id=self.sep_id,
            pad_token_id=self.pad_id,
            bos_token_id=self.bos_id,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            **generate_kwargs(self.settings.generation.for_kind(kind)),
        )
        return self.tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)
