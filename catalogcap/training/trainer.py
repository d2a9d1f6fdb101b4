"""LoRA training of BLIP on reviewed captions: a round that sets its own budget.

Nobody tunes a nightly job, so the defaults must learn on 200 reviews and on 200,000:
- **Steps, not epochs.** A round runs `epochs_budget` passes over the data, but never fewer
  than `min_steps` optimizer steps (small sets need many passes to move a model) nor more
  than `max_auto_steps` (large sets learn enough in part of a pass).
- **A small learning-rate search.** Each of `lr_candidates` trains from the same start.
- **The best checkpoint, chosen on a dev split.** `dev_percent` of the *training* images
  (never the gate's held-out set, so the gate's verdict stays unbiased) is captioned
  `evals_per_run` times per learning rate; the best-scoring checkpoint (CIDEr) among those
  whose product facts are no worse than the untrained model's (the gate's own tolerances) is
  kept, and a learning rate stops after `patience` scores without improvement. The winner is
  the learning rate whose best checkpoint scores highest.
- **A time budget** (`max_minutes`): each learning rate gets its share of what is left.
Explicit `lr`, `epochs` or `max_steps` override the search and the budget.

Checkpoints (safetensors for weights, optimizer and RNG state; JSON for the rest; nothing
is ever unpickled) are written at every dev score, so `catalogcap train --resume` continues
a killed round where it was. Same data and seed give the same adapter.
"""

from __future__ import annotations

import json
import random
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from catalogcap.captioner.pixels import FileToPixels
from catalogcap.settings import Settings, TrainingSettings
from catalogcap.training.batches import encode_targets, target_tokens, text_loss
from catalogcap.training.dataset import Example
from catalogcap.training.evaluate import quick_cider
from catalogcap.training.imagecache import EmbeddingCache, ImageSource, cache_bytes
from catalogcap.training.policy import Budget, split_dev
from catalogcap.training.prompting import ExamplePrompts
from catalogcap.training.ranks import Ranks

STOPS = ("", "budget", "no better on dev", "time")  # why a learning rate's run ended


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    epochs: float
    final_loss: float
    samples_per_second: float
    skipped: int
    lr: float = 0.0
    search: list[dict[str, Any]] = field(default_factory=list)
    budget: dict[str, Any] = field(default_factory=dict)
    dev_images: int = 0
    embed_cache: bool = False
    dev_before: dict[str, Any] | None = None
    processes: int = 1
    unprompted: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "adapter_dir": str(self.adapter_dir)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainResult:
        return cls(**{**data, "adapter_dir": Path(data["adapter_dir"])})


def lora_model(model: Any, cfg: TrainingSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                        target_modules=list(cfg.target_modules), bias="none")
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing` alias: noise, not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


# ---------------------------------------------------------------------------- checkpoints


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


def _lora_state(model: Any) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap `tmp` in for `final`: a kill leaves the old or the new one, never half of one."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)


def save_checkpoint(run_dir: Path, model: Any, optimizer: torch.optim.Optimizer, best: dict[str, torch.Tensor] | None,
                    info: dict[str, Any], ranks: Ranks | None = None) -> None:
    """Write the checkpoint a resume continues from. With several ranks, main writes it and every
    rank adds its own random state (`rng-RANK`); weights and optimizer are the same on all."""
    from safetensors.torch import save_file

    ranks = ranks or Ranks()
    tmp = run_dir / "checkpoint.tmp"
    if ranks.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if ranks.count > 1:
        ranks.barrier()
        save_file({"rng.torch": torch.get_rng_state()}, str(tmp / f"rng-{ranks.index}.safetensors"))
        ranks.barrier()
    if not ranks.main:
        ranks.barrier()  # until main has put the checkpoint in place
        return
    save_file(_lora_state(model), str(tmp / "adapter.safetensors"))
    if best is not None:
        save_file(best, str(tmp / "best.safetensors"))
    tensors, scalars = _flatten_optimizer(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "trainer_state.json").write_text(json.dumps({**info, "optimizer": scalars}), encoding="utf-8")
    _replace_dir(tmp, run_dir / "checkpoint")
    if ranks.count > 1:
        ranks.barrier()


def load_checkpoint(run_dir: Path, candidate: int, model: Any, optimizer: torch.optim.Optimizer,
                    ranks: Ranks | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None] | None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    final = run_dir / "checkpoint"
    if not (final / "trainer_state.json").is_file():
        return None
    info = json.loads((final / "trainer_state.json").read_text(encoding="utf-8"))
    if info.get("candidate") != candidate:
        return None
    set_peft_model_state_dict(model, load_file(str(final / "adapter.safetensors")))
    tensors = load_file(str(final / "optimizer.safetensors"))
    rng = tensors.pop("rng.torch")
    own = final / f"rng-{ranks.index}.safetensors" if ranks is not None and ranks.count > 1 else None
    if own is not None and own.is_file():  # else a run resumed with more processes than it started with
        rng = load_file(str(own))["rng.torch"]
    torch.set_rng_state(rng)
    optimizer.load_state_dict(_unflatten_optimizer(tensors, info.pop("optimizer")))
    best = load_file(str(final / "best.safetensors")) if (final / "best.safetensors").is_file() else None
    return info, best


# ---------------------------------------------------------------------------- the round's training


class _Trainer:
    """One round's training: shared data and image source, one run per learning rate."""

    def __init__(self, make_base: Callable[[], Any], processor: Any, examples: list[Example], settings: Settings,
                 run_dir: Path, *, prompts: dict[str, str] | ExamplePrompts, deadline: float | None,
                 on_step: Callable[[int, int, float], None] | None, ranks: Ranks | None = None) -> None:
        self.make_base, self.processor, self.settings, self.cfg = make_base, processor, settings, settings.training
        self.run_dir, self.on_step = run_dir, on_step
        self.ranks = ranks or Ranks()
        # one prompt per kind (the old form), or one per example rendered from its product context
        self.prompts = prompts if isinstance(prompts, ExamplePrompts) else None
        self.kind_prompts = prompts if isinstance(prompts, dict) else {}
        self.deadline = deadline
        self.load = FileToPixels.from_settings(processor.image_processor, settings)
        self.paths = {e.fingerprint: e.path for e in examples if e.path}
        dev = split_dev([e.fingerprint for e in examples], self.cfg)
        self.dev = [e for e in examples if e.fingerprint in dev]
        self.train = [e for e in examples if e.fingerprint not in dev]
        self.budget = Budget.plan(len(self.train), self.cfg)
        if not self.dev:
            self.budget.lrs = self.budget.lrs[len(self.budget.lrs) // 2:][:1]  # nothing to choose with
        from catalogcap.training.facts import FactVocabulary

        self.vocabulary = FactVocabulary.learn(e.text for e in examples)
        self.last_facts: dict[str, Any] = {}
        self.base_facts: dict[str, Any] | None = None  # the untrained model's facts on the dev split
        self.vision_trainable = any(t in ("qkv", "projection") for t in self.cfg.target_modules)
        self.samples = 0
        self.loss = float("nan")

    def source(self, base: Any) -> ImageSource:
        device = next(base.parameters()).device
        cache = None
        dtype = next(base.vision_model.parameters()).dtype
        if not self.vision_trainable and cache_bytes(len(self.paths), base, dtype) <= self.cfg.embed_cache_gb * 2**30:
            cache = EmbeddingCache(self.run_dir / "embeds")
            ranks = self.ranks
            if cache.complete:
                cache.open()
            else:
                def encode(pixels: torch.Tensor) -> torch.Tensor:
                    with torch.no_grad():
                        return base.vision_model(pixel_values=pixels.to(device))[0].cpu()

                # with several ranks each encodes its share of the images, then main joins the parts
                cache.build(encode, self.paths, self.load, threads=self.settings.engine.decode_threads,
                            part=(ranks.index, ranks.count))
                if ranks.count > 1:
                    ranks.barrier()
                    if ranks.main:
                        cache.merge(ranks.count)
                    ranks.barrier()
                    cache.open()
        return ImageSource(self.load, self.paths, cache, base.vision_model, device,
                           threads=self.settings.engine.decode_threads)

    def dev_score(self, model: Any, source: ImageSource) -> float:
        """CIDEr of the model's captions of the dev images, made as the captioner makes them."""
        from catalogcap.captioner.generate import Captioner
        from catalogcap.captioner.model import LoadedModel

        blip = model.base_model.model
        device = next(blip.parameters()).device
        dev_settings = self.settings.model_copy(update={"engine": self.settings.engine.model_copy(
            update={"int8": False, "compile": False})})
        captioner = Captioner(LoadedModel(blip, self.processor, self.settings.model, None, device, torch.float32),
                              dev_settings)
        by_image: dict[str, list[Example]] = {}
        for example in self.dev:
            by_image.setdefault(example.fingerprint, []).append(example)
        refs: dict[str, list[str]] = {}
        hyps: dict[str, str] = {}
        model.eval()
        try:
            for fps, embeds in source.batches(sorted(by_image), 32, lambda fp: fp, grad=False):
                requests = [self.prompts.request(by_image[fp][0]) for fp in fps] if self.prompts else None
                for fp, captions in zip(fps, captioner.caption_embeddings(embeds.detach(), requests)):
                    for example in by_image[fp]:
                        key = f"{fp}:{example.kind}"
                        refs.setdefault(key, []).append(example.text)
                        hyps[key] = captions.texts[example.kind]
        finally:
            model.train()
        facts = self.vocabulary.compare([(hyps[k], refs[k][0]) for k in refs])
        self.last_facts = {k: facts[k] for k in ("fact_recall", "fact_error_rate")}
        return quick_cider(refs, hyps)

    def run(self, index: int, lr: float, base: Any, source: ImageSource, *, resume: bool) -> dict[str, Any]:
        from peft import set_peft_model_state_dict
        from transformers import get_linear_schedule_with_warmup

        cfg, budget, ranks = self.cfg, self.budget, self.ranks
        torch.manual_seed(cfg.seed)
        model = lora_model(base, cfg)
        device = next(model.parameters()).device
        if cfg.gradient_checkpointing and device.type == "cuda":
            model.gradient_checkpointing_enable()
        params = [p for p in model.parameters() if p.requires_grad]
        if ranks.count > 1:
            ranks.same_start(params)
            torch.manual_seed(cfg.seed + 1_000_003 * ranks.index)  # the same start, each rank its own dropout
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        schedule = get_linear_schedule_with_warmup(optimizer, max(1, budget.steps // 10), budget.steps)
        if self.dev and self.base_facts is None and ranks.main:
            base_file = self.run_dir / "search" / "base.json"
            if base_file.is_file():
                self.base_facts = json.loads(base_file.read_text(encoding="utf-8"))
            else:  # LoRA starts as the identity: this is the model before the round
                self.base_facts = {"cider": round(self.dev_score(model, source), 4), **self.last_facts}
                base_file.write_text(json.dumps(self.base_facts), encoding="utf-8")
        state: dict[str, Any] = {"candidate": index, "lr": lr, "epoch": 0, "micro": 0, "step": 0,
                                 "best_score": None, "best_ok": False, "best_step": 0, "bad": 0, "history": [],
                                 "stopped": ""}
        best: dict[str, torch.Tensor] | None = None
        loaded = load_checkpoint(self.run_dir, index, model, optimizer, ranks) if resume else None
        if loaded is not None:
            state, best = loaded
            for _ in range(state["step"]):
                schedule.step()
        share = None
        if self.deadline is not None:
            left = len(budget.lrs) - index
            share = time.monotonic() + max(0.0, self.deadline - time.monotonic()) / left
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                    else torch.autocast("cpu", enabled=False))
        blip = model.base_model.model
        model.train()
        while not state["stopped"]:
            order = list(range(len(self.train)))
            random.Random(cfg.seed + state["epoch"]).shuffle(order)
            micro_size = cfg.batch_size  # one global micro-batch, whatever the number of ranks
            skip = state["micro"]
            items = order[skip * micro_size:]
            groups = (ranks.split(items[start:start + micro_size]) for start in range(0, len(items), micro_size))
            micro, used = skip, 0
            for idx, embeds in source.groups(groups, lambda i: self.train[i].fingerprint, grad=self.vision_trainable):
                micro += 1
                used += len(idx)
                loss = self._backward(blip, idx, embeds, device, autocast)
                last = micro * micro_size >= len(order)
                if micro % cfg.grad_accum and not last:
                    continue
                if ranks.count > 1:
                    loss = self._sum_gradients(params, loss)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                self.loss = float(loss)
                if self.on_step is not None:
                    self.on_step(index * budget.steps + state["step"], len(budget.lrs) * budget.steps, self.loss)
                done = state["step"] >= budget.steps
                if state["step"] % budget.eval_every == 0 or done:
                    best = self._score(model, source, state, best, done=done, share=share)
                    # where a resume picks up: the next micro-batch of this epoch, or the next epoch
                    at = {"micro": 0, "epoch": state["epoch"] + 1} if last else {"micro": micro}
                    save_checkpoint(self.run_dir, model, optimizer, best, {**state, **at}, ranks)
                    if state["stopped"]:
                        break
            else:
                if skip == 0 and not ranks.sum(torch.tensor([float(used)])).item():
                    raise ValueError(f"none of the {len(self.paths)} training images could be read")
                state["epoch"] += 1
                state["micro"] = 0
        if best is not None:
            set_peft_model_state_dict(model, best)
        return {"model": model, **{k: state[k] for k in ("lr", "best_score", "best_ok", "best_step", "step",
                                                           "stopped", "history")}}

    def _backward(self, blip: Any, idx: list[int], embeds: torch.Tensor | None, device: torch.device,
                  autocast: Any) -> torch.Tensor:
        """Back-propagate this rank's share of one micro-batch; the micro-batch's mean token loss
        (this rank's part of it, with several ranks)."""
        cfg, ranks = self.cfg, self.ranks
        batch = None
        if idx:
            text_cfg = blip.config.text_config
            pairs = [self.target(self.train[i]) for i in idx]
            batch = encode_targets(self.processor.tokenizer, [p for p, _ in pairs], [t for _, t in pairs],
                                   bos_id=text_cfg.bos_token_id, pad_id=text_cfg.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
        if ranks.count == 1:
            if batch is None:
                return torch.zeros(())
            with autocast:
                loss = text_loss(blip, embeds, batch) / cfg.grad_accum
        else:
            # each rank's token-loss sum over the target tokens of the whole micro-batch: summed over
            # the ranks, the gradients are those of one process's mean loss on the micro-batch
            total = ranks.sum(torch.tensor([float(target_tokens(batch) if batch else 0)])).item()
            if batch is None or not total:
                return torch.zeros(())
            with autocast:
                loss = text_loss(blip, embeds, batch, reduction="sum") / total / cfg.grad_accum
        loss.backward()
        self.samples += len(idx)
        return loss.detach().float() * cfg.grad_accum

    def _sum_gradients(self, params: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
        """Sum the LoRA gradients (and the loss) over the ranks in one all-reduce; every rank then
        takes the same optimizer step. (LoRA gradients are small: one flat buffer is cheap.)"""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads] + [loss.reshape(1).to(grads[0].device)])
        self.ranks.sum(flat)
        offset = 0
        for param in params:
            n = param.numel()
            param.grad = flat[offset:offset + n].view_as(param).to(param.dtype)
            offset += n
        return flat[-1]

    def target(self, example: Example) -> tuple[str, str]:
        """(prompt, target text) the example is trained with."""
        if self.prompts is not None:
            return self.prompts.for_example(example)
        return self.kind_prompts[example.kind], example.text

    def facts_ok(self, facts: dict[str, Any]) -> bool:
        """Whether dev facts are no worse than before the round, by the gate's own tolerances."""
        base, cfg = self.base_facts, self.cfg
        if not base:
            return True
        worse_errors = (facts.get("fact_error_rate") is not None and base.get("fact_error_rate") is not None
                        and facts["fact_error_rate"] > base["fact_error_rate"] + cfg.fact_error_tolerance)
        worse_recall = (facts.get("fact_recall") is not None and base.get("fact_recall") is not None
                        and facts["fact_recall"] < base["fact_recall"] - cfg.fact_recall_tolerance)
        return not (worse_errors or worse_recall)

    def _score(self, model: Any, source: ImageSource, state: dict[str, Any], best: dict[str, torch.Tensor] | None,
               *, done: bool, share: float | None) -> dict[str, torch.Tensor] | None:
        if self.dev and self.ranks.main:
            score = self.dev_score(model, source)
            ok = self.facts_ok(self.last_facts)
            state["history"].append([state["step"], round(score, 4), ok, self.last_facts])
            # the gate refuses a model that gets more facts wrong: prefer checkpoints it would accept
            if state["best_score"] is None or (ok, score) > (state["best_ok"], state["best_score"]):
                state["best_score"], state["best_ok"], state["best_step"] = score, ok, state["step"]
                best = _lora_state(model)
            # patience counts scores that do not beat the best score so far, facts aside: a rate that
            # is still learning the style keeps going
            if score > state.get("top_score", float("-inf")):
                state["top_score"], state["bad"] = score, 0
            else:
                state["bad"] += 1
        elif not self.dev:
            state["best_step"] = state["step"]
        if done:
            state["stopped"] = "budget"
        elif self.dev and state["bad"] >= self.cfg.patience:
            state["stopped"] = "no better on dev"
        elif share is not None and time.monotonic() >= share:
            state["stopped"] = "time"
        if self.ranks.count > 1:  # main scored: its decision is everyone's
            state["stopped"] = STOPS[self.ranks.share(STOPS.index(state["stopped"]))]
        return best


def train(
    make_base: Callable[[], Any], processor: Any, examples: list[Example], settings: Settings, run_dir: Path, *,
    resume: bool = False, prompts: dict[str, str] | ExamplePrompts, deadline: float | None = None,
    on_step: Callable[[int, int, float], None] | None = None, ranks: Ranks | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `examples` by the round's policy; writes run_dir/adapter (safetensors).

    `make_base` gives a fresh base model (one per learning rate tried); `deadline` is a
    `time.monotonic()` time the search must end by. With `ranks` (see ranks.py) this is one of
    several data-parallel processes; they must all call it with the same arguments.
    """
    ranks = ranks or Ranks()
    trainer = _Trainer(make_base, processor, examples, settings, run_dir, prompts=prompts, deadline=deadline,
                       on_step=on_step, ranks=ranks)
    if not trainer.train:
        raise ValueError("no training examples left")
    t0 = time.perf_counter()
    search_dir = run_dir / "search"
    search_dir.mkdir(exist_ok=True)
    results: list[dict[str, Any]] = []
    source: ImageSource | None = None
    winner: tuple[bool, float, int] | None = None
    for index, lr in enumerate(trainer.budget.lrs):
        done_file = search_dir / f"lr-{index}.json"
        if resume and done_file.is_file():
            results.append(json.loads(done_file.read_text(encoding="utf-8")))
        else:
            base = make_base()
            source = source or trainer.source(base)
            source.vision = base.vision_model
            run = trainer.run(index, lr, base, source, resume=resume)
            model = run.pop("model")
            if ranks.main:
                model.save_pretrained(search_dir / f"lr-{index}", safe_serialization=True)
                done_file.write_text(json.dumps(run), encoding="utf-8")
            del model
            ranks.barrier()
            # the other ranks did not score: main's record of the run is the run's record
            results.append(run if ranks.main else json.loads(done_file.read_text(encoding="utf-8")))
        score = results[-1]["best_score"]
        key = (bool(results[-1].get("best_ok")), score if score is not None else float("-inf"), index)
        if winner is None or key[:2] > winner[:2]:
            winner = key
        if trainer.deadline is not None and ranks.share(int(time.monotonic() >= trainer.deadline)):
            break
    assert winner is not None
    chosen = results[winner[2]]
    adapter_dir = run_dir / "adapter"
    if ranks.main:
        shutil.rmtree(adapter_dir, ignore_errors=True)
        shutil.copytree(search_dir / f"lr-{winner[2]}", adapter_dir)
    elapsed = max(time.perf_counter() - t0, 1e-9)
    failed = set(source.failed) if source is not None else set()
    samples = float(trainer.samples)
    if ranks.count > 1:
        samples = ranks.sum(torch.tensor([samples], dtype=torch.float64)).item()
        # each rank read its own share of the images: the unreadable ones are the union
        (run_dir / f"failed-{ranks.index}.json").write_text(json.dumps(sorted(failed)), encoding="utf-8")
        ranks.barrier()
        for rank in range(ranks.count):
            failed.update(json.loads((run_dir / f"failed-{rank}.json").read_text(encoding="utf-8")))
        ranks.barrier()
        (run_dir / f"failed-{ranks.index}.json").unlink()
    skipped = sum(1 for e in examples if e.fingerprint in failed)
    return TrainResult(
        adapter_dir, chosen["best_step"], chosen["best_step"] / trainer.budget.per_epoch, trainer.loss,
        samples / elapsed, skipped, lr=chosen["lr"], search=results,
        budget={**asdict(trainer.budget), "lrs": trainer.budget.lrs}, dev_images=len({e.fingerprint for e in
                                                                                      trainer.dev}),
        embed_cache=bool(source and source.cached), dev_before=trainer.base_facts, processes=ranks.count,
        unprompted=trainer.prompts.unprompted if trainer.prompts is not None else 0)
