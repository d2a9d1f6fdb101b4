"""LoRA training of BLIP on reviewed captions, with per-epoch checkpoints and resume.

With the default targets (text decoder `query`/`value`) the vision encoder is frozen, so
each image's embeddings are computed once and reused every epoch: on a CPU this is most
of the cost of a step. With `qkv` (vision) targeted, pixels go through the encoder each
step. Checkpoints are safetensors (adapter weights and the optimizer state, flattened)
plus a JSON state file: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from catalogcap import images
from catalogcap.settings import Settings, TrainingSettings
from catalogcap.training.batches import encode_targets, text_loss
from catalogcap.training.dataset import Example


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    epochs: int
    final_loss: float
    samples_per_second: float
    skipped: int


def load_pixels(examples: list[Example], processor: Any, settings: Settings) -> tuple[list[Example], torch.Tensor, int]:
    """Read each example's image through the intake rules; unreadable ones are skipped and counted."""
    size = int(processor.image_processor.size["height"])
    kept, pictures, skipped, cache = [], [], 0, {}
    for example in examples:
        if example.fingerprint not in cache:
            try:
                cache[example.fingerprint] = images.load(Path(example.path), max_pixels=settings.max_pixels,
                                                         max_bytes=int(settings.max_file_mb * 2**20), target_size=size)
            except images.ImageRejected:
                cache[example.fingerprint] = None
        if cache[example.fingerprint] is None:
            skipped += 1
            continue
        kept.append(example)
        pictures.append(cache[example.fingerprint])
    if not pictures:
        return kept, torch.empty(0), skipped
    return kept, processor.image_processor(images=pictures, return_tensors="pt").pixel_values, skipped


def lora_model(model: Any, cfg: TrainingSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                        target_modules=list(cfg.target_modules), bias="none")
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing` alias: noise, not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars["state"].setdefault(str(index), {})[key] = value
    return tensors, scalars


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in scalars["state"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": scalars["param_groups"]}


def save_checkpoint(run_dir: Path, model: Any, optimizer: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    """Write the checkpoint under a temporary name, then rename: a kill never leaves half of one."""
    from safetensors.torch import save_file

    tmp = run_dir / "checkpoint.tmp"
    final = run_dir / "checkpoint"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tensors, scalars = _flatten_optimizer(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "trainer_state.json").write_text(json.dumps({**info, "optimizer": scalars}), encoding="utf-8")
    if final.exists():
        old = run_dir / "checkpoint.old"
        final.rename(old)
        tmp.rename(final)
        import shutil

        shutil.rmtree(old)
    else:
        tmp.rename(final)


def load_checkpoint(run_dir: Path, model: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    final = run_dir / "checkpoint"
    if not (final / "trainer_state.json").is_file():
        return None
    info = json.loads((final / "trainer_state.json").read_text(encoding="utf-8"))
    set_peft_model_state_dict(model, load_file(str(final / "adapter_model.safetensors")))
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(final / "optimizer.safetensors")),
                                                   info.pop("optimizer")))
    return info


def train(
    base: Any, processor: Any, examples: list[Example], settings: Settings, run_dir: Path, *,
    resume: bool = False, prompts: dict[str, str], on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `examples`; writes run_dir/adapter (safetensors) and returns it."""
    cfg = settings.training
    device = next(base.parameters()).device
    torch.manual_seed(cfg.seed)
    kept, pixels, skipped = load_pixels(examples, processor, settings)
    if not kept:
        raise ValueError("no readable training images")
    text_cfg = base.config.text_config
    vision_trainable = any(t in ("qkv", "projection") for t in cfg.target_modules)
    embeds = None
    if not vision_trainable:
        with torch.no_grad():
            chunks = [base.vision_model(pixel_values=pixels[i : i + 64].to(device))[0]
                      for i in range(0, len(kept), 64)]
        embeds = torch.cat(chunks)
    model = lora_model(base, cfg)
    if cfg.gradient_checkpointing and device.type == "cuda":
        model.gradient_checkpointing_enable()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    per_epoch = math.ceil(len(kept) / cfg.batch_size / cfg.grad_accum)
    total = per_epoch * cfg.epochs if not cfg.max_steps else min(cfg.max_steps, per_epoch * cfg.epochs)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(total - warmup, 1))))
    start_epoch, step = 0, 0
    if resume:
        info = load_checkpoint(run_dir, model, optimizer)
        if info is not None:
            start_epoch, step = info["epoch"], info["step"]
            for _ in range(step):
                schedule.step()
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))
    loss_value, seen, t0 = float("nan"), 0, time.perf_counter()
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        if step >= total:
            break
        torch.manual_seed(cfg.seed + epoch)
        order = list(range(len(kept)))
        random.Random(cfg.seed + epoch).shuffle(order)
        micro = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        for m, idx in enumerate(micro):
            batch = encode_targets(processor.tokenizer, [prompts[kept[i].kind] for i in idx],
                                   [kept[i].text for i in idx], bos_id=text_cfg.bos_token_id,
                                   pad_id=text_cfg.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast:
                if embeds is not None:
                    image_embeds = embeds[idx]
                else:
                    image_embeds = model.base_model.model.vision_model(pixel_values=pixels[idx].to(device))[0]
                loss = text_loss(model.base_model.model, image_embeds, batch) / cfg.grad_accum
            loss.backward()
            seen += len(idx)
            if (m + 1) % cfg.grad_accum == 0 or m == len(micro) - 1:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                loss_value = loss.item() * cfg.grad_accum
                if on_step is not None:
                    on_step(step, total, loss_value)
                if step >= total:
                    break
        save_checkpoint(run_dir, model, optimizer, {"epoch": epoch + 1, "step": step, "loss": loss_value})
    model.eval()
    adapter_dir = run_dir / "adapter"
    model.save_pretrained(adapter_dir, safe_serialization=True)
    elapsed = max(time.perf_counter() - t0, 1e-9)
    return TrainResult(adapter_dir, step, cfg.epochs, loss_value, seen / elapsed, skipped)
