"""Pretrain the demo base model: a tiny BLIP taught the *generic* caption style.

Reproducible: `python examples/pretrain_demo_model.py --seed 7` (or this module's
`pretrain`) draws the same synthetic catalog and trains to the same weights on CPU. The
result is shipped as package data in catalogcap/demo/model/ so `catalogcap demo` needs
no training before it starts.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from catalogcap.demo import catalog
from catalogcap.demo.tiny import build_tiny_blip

DESCRIPTION_PROMPT = "a product photo of"
DIMENSIONS = {"image_size": 64, "patch_size": 8, "hidden": 96, "layers": 3, "heads": 4, "text_layers": 3}


def vocabulary() -> list[str]:
    words: set[str] = set(DESCRIPTION_PROMPT.split())
    for product in catalog.PRODUCTS:
        for colour in catalog.COLOURS:
            for pattern in catalog.PATTERNS:
                for bg in catalog.BACKGROUNDS:
                    item = catalog.Product(0, product, colour, pattern, bg, "PNG", (10, 10), False, False)
                    for kind in ("alt_text", "description"):
                        words.update(item.generic(kind).replace(",", " ").split())
                        words.update(item.house(kind).replace(",", " ").split())
    return sorted(words)


def pretrain(out_dir: Path, *, seed: int = 7, images: int = 1200, steps: int = 700, batch_size: int = 48,
             lr: float = 2e-3, log=print) -> Path:
    import torch

    from catalogcap.training.batches import encode_targets, text_loss

    torch.manual_seed(seed)
    random.seed(seed)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    model, processor = build_tiny_blip(out_dir, words=vocabulary(), seed=seed, **DIMENSIONS)
    items = catalog.products(images, seed=seed)
    pixels = processor.image_processor(images=[catalog.draw(i).convert("RGB") for i in items],
                                       return_tensors="pt").pixel_values
    tok = processor.tokenizer
    cfg = model.config.text_config
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    rng = random.Random(seed)
    start = time.perf_counter()
    for step in range(steps):
        idx = rng.sample(range(len(items)), batch_size)
        kinds = [rng.choice(("alt_text", "description")) for _ in idx]
        prompts = [DESCRIPTION_PROMPT if k == "description" else "" for k in kinds]
        texts = [items[i].generic(k) for i, k in zip(idx, kinds)]
        batch = encode_targets(tok, prompts, texts, bos_id=cfg.bos_token_id, pad_id=cfg.pad_token_id)
        embeds = model.vision_model(pixel_values=pixels[idx])[0]
        loss = text_loss(model, embeds, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step:4d}/{steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f}s)")
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    (out_dir / "PRETRAINED.txt").write_text(
        f"catalogcap demo base model: tiny BLIP pretrained on the generic caption style.\n"
        f"seed={seed} images={images} steps={steps} batch_size={batch_size} lr={lr} dims={DIMENSIONS}\n"
        f"made by: python examples/pretrain_demo_model.py --seed {seed}\n", encoding="utf-8")
    return out_dir
