"""Build BLIP-architecture models of tiny dimensions, offline: for tests and the demo.

Same classes and file format as `Salesforce/blip-image-captioning-base`
(`BlipForConditionalGeneration`, `BlipProcessor`, safetensors), only small. The traps
listed in BLIP-NOTES are handled here once: the tokenizer is built from a vocab file
(`vocab=PATH`), bos/pad/sep/eos ids are set on the text config with eos == sep, and the
vision initializer range is 0.02 so a random model does not produce NaNs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
BASE_WORDS = [
    "a", "an", "the", "of", "on", "with", "in", "and", "is", "for", "to", "photo", "product", "picture", "image",
    "close", "up", "white", "background", "black", "red", "blue", "green", "yellow", "shirt", "mug", "shoe",
]
PUNCTUATION = [".", ",", "-", "'", "(", ")", ":", "/", "&", "%", "!", "?", '"']


def build_vocab(words: Iterable[str] = ()) -> list[str]:
    """Specials, whole words, then single characters and ## pieces so any text tokenizes."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    seen: dict[str, None] = dict.fromkeys(SPECIALS)
    for word in [*BASE_WORDS, *(w.lower() for w in words)]:
        if word and word.isalnum():
            seen.setdefault(word)
    for token in [*letters, *PUNCTUATION, *(f"##{c}" for c in letters)]:
        seen.setdefault(token)
    return list(seen)


def build_tiny_blip(
    out_dir: Path | str,
    *,
    words: Iterable[str] = (),
    image_size: int = 32,
    patch_size: int = 8,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    text_hidden: int | None = None,
    text_layers: int | None = None,
    seed: int = 0,
):
    """Write a randomly initialised tiny BLIP captioner + processor to `out_dir`; return (model, processor)."""
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab_path = out / "vocab.txt"
    vocab_path.write_text("\n".join(build_vocab(words)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(
        vocab=str(vocab_path), do_lower_case=True, bos_token="[DEC]", model_max_length=128
    )
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIALS}
    text_hidden = text_hidden or hidden
    config = BlipConfig(
        vision_config={
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "image_size": image_size,
            "patch_size": patch_size,
            "initializer_range": 0.02,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": text_hidden,
            "encoder_hidden_size": hidden,
            "intermediate_size": text_hidden * 2,
            "num_hidden_layers": text_layers or layers,
            "num_attention_heads": heads,
            "max_position_embeddings": 128,
            "bos_token_id": ids["[DEC]"],
            "pad_token_id": ids["[PAD]"],
            "sep_token_id": ids["[SEP]"],
            "eos_token_id": ids["[SEP]"],
        },
        projection_dim=hidden,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    model.generation_config.bos_token_id = ids["[DEC]"]
    model.generation_config.pad_token_id = ids["[PAD]"]
    model.generation_config.eos_token_id = ids["[SEP]"]
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    vocab_path.unlink(missing_ok=True) if (out / "tokenizer.json").exists() else None
    return model, processor
