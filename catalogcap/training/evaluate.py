"""Held-out evaluation with pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr, the alt-text
rule pass rate, and product facts (see facts.py). Captions are generated with the daemon's
own generation settings, cleaning and image pipeline (`Captioner.caption_files`, which
streams the files a batch at a time), so the numbers describe what reviewers would see.

Per-caption scores are kept beside the corpus scores so that the gate can put an interval
on a difference: `paired_interval` bootstraps over held-out *images*.

pycocoevalcap's PTB tokenizer and METEOR run on Java (17 here); SPICE is not used.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from catalogcap.captioner.text import alt_text_warnings
from catalogcap.training.dataset import Example
from catalogcap.training.facts import FactVocabulary, words

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def _quiet_java() -> None:
    """The PTB tokenizer's JVM reports its speed on stderr; keep the CLI output clean."""
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    class _QuietSubprocess:
        PIPE = subprocess.PIPE

        @staticmethod
        def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen:
            kwargs.setdefault("stderr", subprocess.DEVNULL)
            return subprocess.Popen(*args, **kwargs)

    ptb.subprocess = _QuietSubprocess  # type: ignore[assignment]


def score_details(references: dict[str, list[str]], hypotheses: dict[str, str], *, meteor: Any = None
                  ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Corpus scores and per-key scores of hypotheses against references (same keys).
    Pass a `Meteor()` to reuse one METEOR JVM across calls."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if not references:
        return dict.fromkeys(METRICS, 0.0), {m: {} for m in METRICS}
    _quiet_java()
    with contextlib.redirect_stdout(io.StringIO()):  # the tokenizer prints its speed
        tokenizer = PTBTokenizer()
        refs = tokenizer.tokenize({k: [{"caption": r} for r in v] for k, v in references.items()})
        hyps = tokenizer.tokenize({k: [{"caption": hypotheses[k] or "empty"}] for k in references})
    keys = list(refs)  # pycocoevalcap returns per-key scores in the order of the references' keys
    scores: dict[str, float] = {}
    per_key: dict[str, dict[str, float]] = {}
    bleu, bleu_each = Bleu(4).compute_score(refs, hyps, verbose=0)
    for i, value in enumerate(bleu):
        scores[f"BLEU-{i + 1}"] = float(value)
        per_key[f"BLEU-{i + 1}"] = dict(zip(keys, map(float, bleu_each[i])))
    scorer = meteor or Meteor()
    value, each = scorer.compute_score(refs, hyps)
    scores["METEOR"], per_key["METEOR"] = float(value), dict(zip(keys, map(float, each)))
    del scorer  # pycocoevalcap's __del__ stops the JVM
    for name, metric in (("ROUGE-L", Rouge()), ("CIDEr", Cider())):
        value, each = metric.compute_score(refs, hyps)
        scores[name], per_key[name] = float(value), dict(zip(keys, map(float, each)))
    return scores, per_key


def score(references: dict[str, list[str]], hypotheses: dict[str, str], *, meteor: Any = None) -> dict[str, float]:
    """Corpus scores for hypotheses against references (same keys), via pycocoevalcap."""
    return score_details(references, hypotheses, meteor=meteor)[0]


def quick_cider(references: dict[str, list[str]], hypotheses: dict[str, str]) -> float:
    """CIDEr-D without the Java tokenizer (lower-cased words): cheap enough to score checkpoints."""
    from pycocoevalcap.cider.cider import Cider

    if not references:
        return 0.0
    refs = {k: [" ".join(words(r)) for r in v] for k, v in references.items()}
    hyps = {k: [" ".join(words(hypotheses[k])) or "empty"] for k in references}
    return float(Cider().compute_score(refs, hyps)[0])


@dataclass
class Evaluation:
    """What `evaluate` measured: `summary` is what gets stored and printed."""

    summary: dict[str, Any]
    per_key: dict[str, dict[str, float]] = field(default_factory=dict)
    image_of: dict[str, str] = field(default_factory=dict)  # caption key -> image fingerprint


def caption_examples(captioner: Any, examples: list[Example], prompts: Any = None) -> dict[str, dict[str, str]]:
    """Caption each distinct image of `examples` once, streaming: fingerprint -> kind -> text.
    `prompts` (an `ExamplePrompts`): each image's product fields, so field templates render as
    the worker renders them."""
    paths: dict[str, str] = {}
    for example in examples:
        if example.path:
            paths.setdefault(example.fingerprint, example.path)
    by_path = {Path(path): fp for fp, path in paths.items()}
    outputs: dict[str, dict[str, str]] = {}
    extra = {}
    if prompts is not None and getattr(captioner, "per_image", False):
        extra["contexts"] = prompts.contexts_by_path(examples)
    for path, result in captioner.caption_files(list(by_path), **extra):
        if not isinstance(result, Exception):
            outputs[by_path[Path(path)]] = result.texts
    return outputs


def evaluate(captioner: Any, examples: list[Example], settings: Any, *,
             vocabulary: FactVocabulary | None = None, prompts: Any = None) -> Evaluation:
    """Caption every held-out image once and score each kind and all kinds together."""
    outputs = caption_examples(captioner, examples, prompts)
    refs: dict[str, list[str]] = {}
    hyps: dict[str, str] = {}
    image_of: dict[str, str] = {}
    for example in examples:
        if example.fingerprint in outputs:
            key = f"{example.fingerprint}:{example.kind}"
            refs.setdefault(key, []).append(example.text)
            hyps[key] = outputs[example.fingerprint][example.kind]
            image_of[key] = example.fingerprint
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor() if refs else None
    overall, per_key = score_details(refs, hyps, meteor=meteor)
    result: dict[str, Any] = dict(overall)
    vocabulary = vocabulary or FactVocabulary([])
    for kind in sorted({e.kind for e in examples}):
        kind_keys = [k for k in refs if k.endswith(f":{kind}")]
        result[kind] = score({k: refs[k] for k in kind_keys}, {k: hyps[k] for k in kind_keys}, meteor=meteor)
        result[kind].update(vocabulary.compare([(hyps[k], refs[k][0]) for k in kind_keys]))
    del meteor
    result.update(vocabulary.compare([(hyps[k], refs[k][0]) for k in refs]))
    alts = [hyps[k] for k in hyps if k.endswith(":alt_text")]
    limit = settings.alt_text_limit
    result["alt_text_rule_pass"] = (
        sum(1 for t in alts if not alt_text_warnings(t, limit=limit)) / len(alts) if alts else None)
    result["n"] = len(refs)
    result["images"] = len(outputs)
    result["samples"] = [{"reference": refs[k][0], "caption": hyps[k]} for k in list(refs)[:6]]
    return Evaluation(result, per_key, image_of)


def paired_interval(candidate: Evaluation, active: Evaluation, metric: str, *, confidence: float = 0.9,
                    resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of (candidate - active) on `metric`, resampling held-out images.

    Both were scored on the same captions; each resample draws images with replacement and
    averages the per-caption differences of their captions (corpus CIDEr is that average).
    """
    a, b = candidate.per_key.get(metric, {}), active.per_key.get(metric, {})
    per_image: dict[str, list[float]] = {}
    for key in a.keys() & b.keys():
        per_image.setdefault(candidate.image_of.get(key, key), []).append(a[key] - b[key])
    if not per_image:
        return 0.0, 0.0
    sums = np.array([sum(d) for _, d in sorted(per_image.items())])
    counts = np.array([len(d) for _, d in sorted(per_image.items())], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = []
    chunk = max(1, 4_000_000 // len(sums))  # bounded memory however large the held-out set
    for start in range(0, resamples, chunk):
        draw = rng.integers(0, len(sums), size=(min(chunk, resamples - start), len(sums)))
        means.append(sums[draw].sum(axis=1) / counts[draw].sum(axis=1))
    low, high = np.quantile(np.concatenate(means), [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)
