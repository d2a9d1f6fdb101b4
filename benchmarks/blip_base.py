"""Salesforce/blip-image-captioning-base's architecture, randomly initialised, built offline.

Random weights cost the same compute as the real ones: `BlipConfig()` is the base model
(384 px, ViT-B/16, 12 text layers, vocabulary 30524) except for the text heads (12 in the
checkpoint, 8 by default) and the vision initializer range (the default 1e-10 leaves the
tower near zero and slow on denormals; the checkpoint uses 0.02). The tokenizer has the
real special-token ids (pad 0, [CLS] 101, [SEP] 102, [DEC] 30522) and filler words.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

BERT_SPECIALS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
BERT_VOCAB = 30522


def build_blip_base(*, seed: int = 0) -> tuple[Any, Any]:
    """(BlipForConditionalGeneration in eval mode, BlipProcessor) of the base architecture."""
    import torch
    from transformers import BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from catalogcap.captioner.model import quiet_transformers

    quiet_transformers()
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.txt"
        words = [BERT_SPECIALS.get(i, f"w{i}") for i in range(BERT_VOCAB)]
        vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
        tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=512)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    assert len(tokenizer) == 30524 and tokenizer.convert_tokens_to_ids("[DEC]") == 30522
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(), tokenizer=tokenizer)
    config = BlipConfig(vision_config={"initializer_range": 0.02}, text_config={"num_attention_heads": 12})
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    return model, processor
