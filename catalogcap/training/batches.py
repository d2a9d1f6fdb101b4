"""Turning (image, kind, text) examples into BLIP training tensors, the way BLIP generates.

The traps (BLIP-NOTES): the tokenizer yields [CLS] ... [SEP]; the decoder must start from
bos ([DEC]), so the first id is swapped for bos; generation stops at [SEP], so [SEP] stays
as the last label; padding is -100 in the labels. The per-kind prompt is tokenized exactly
as at generation time (`prompt_ids`) and its positions are -100 too, so the model learns
the continuation it will be asked for.
"""

from __future__ import annotations

from typing import Any

import torch


def encode_targets(tokenizer: Any, prompts: list[str], texts: list[str], *, bos_id: int, pad_id: int,
                   max_length: int = 64) -> dict[str, torch.Tensor]:
    full = [f"{p} {t}".strip() if p else t for p, t in zip(prompts, texts)]
    enc = tokenizer(full, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    input_ids = enc.input_ids.clone()
    input_ids[:, 0] = bos_id
    labels = input_ids.clone()
    labels[enc.attention_mask == 0] = -100
    labels[:, 0] = -100  # bos is given, never predicted
    for row, prompt in enumerate(prompts):
        if prompt:
            # [CLS] p1..pk [SEP] -> bos p1..pk: k+1 positions are prompt, not target
            n = len(tokenizer(prompt).input_ids) - 1
            labels[row, :n] = -100
    return {"input_ids": input_ids, "attention_mask": enc.attention_mask, "labels": labels}


def text_loss(model: Any, image_embeds: torch.Tensor, batch: dict[str, torch.Tensor], *,
              reduction: str = "mean") -> torch.Tensor:
    """Token cross-entropy of the text decoder given image embeddings (BLIP's own loss): the mean
    over the batch's target tokens, or with `reduction="sum"` their sum (see `target_tokens`)."""
    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    out = model.text_decoder(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=image_mask,
        labels=batch["labels"],
        reduction=reduction,
    )
    return out.loss


def target_tokens(batch: dict[str, torch.Tensor]) -> int:
    """How many tokens `text_loss` scores in `batch` (BLIP shifts the labels by one)."""
    return int((batch["labels"][:, 1:] != -100).sum())
