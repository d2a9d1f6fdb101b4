"""Held-out evaluation with pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr, plus the
alt-text rule pass rate. Captions are generated with the daemon's own generation settings
and cleaning, so the numbers describe what reviewers would see.

pycocoevalcap's PTB tokenizer and METEOR run on Java (17 here); SPICE is not used.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path
from typing import Any

from catalogcap.captioner.text import alt_text_warnings
from catalogcap.training.dataset import Example

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


def score(references: dict[str, list[str]], hypotheses: dict[str, str], *, meteor: Any = None) -> dict[str, float]:
    """Corpus scores for hypotheses against references (same keys), via pycocoevalcap.
    Pass a `Meteor()` to reuse one METEOR JVM across calls."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if not references:
        return dict.fromkeys(METRICS, 0.0)
    _quiet_java()
    with contextlib.redirect_stdout(io.StringIO()):  # the tokenizer prints its speed
        tokenizer = PTBTokenizer()
        refs = tokenizer.tokenize({k: [{"caption": r} for r in v] for k, v in references.items()})
        hyps = tokenizer.tokenize({k: [{"caption": hypotheses[k] or "empty"}] for k in references})
    scores: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    scores.update({f"BLEU-{i + 1}": float(b) for i, b in enumerate(bleu)})
    scorer = meteor or Meteor()
    scores["METEOR"] = float(scorer.compute_score(refs, hyps)[0])
    del scorer  # pycocoevalcap's __del__ stops the JVM
    scores["ROUGE-L"] = float(Rouge().compute_score(refs, hyps)[0])
    scores["CIDEr"] = float(Cider().compute_score(refs, hyps)[0])
    return scores


def evaluate(captioner: Any, examples: list[Example], settings: Any) -> dict[str, Any]:
    """Caption every held-out image once and score each kind and all kinds together."""
    from catalogcap import images

    pictures: dict[str, Any] = {}
    for example in examples:
        if example.fingerprint not in pictures:
            try:
                pictures[example.fingerprint] = images.load(
                    Path(example.path), max_pixels=settings.max_pixels,
                    max_bytes=int(settings.max_file_mb * 2**20), target_size=captioner.image_size)
            except images.ImageRejected:
                pictures[example.fingerprint] = None
    keys = [fp for fp, image in pictures.items() if image is not None]
    outputs: dict[str, dict[str, str]] = {}
    for start in range(0, len(keys), settings.batch_size):
        chunk = keys[start : start + settings.batch_size]
        for fp, result in zip(chunk, captioner.caption_images([pictures[fp] for fp in chunk])):
            outputs[fp] = result.texts
    refs: dict[str, list[str]] = {}
    hyps: dict[str, str] = {}
    for example in examples:
        if example.fingerprint in outputs:
            key = f"{example.fingerprint}:{example.kind}"
            refs.setdefault(key, []).append(example.text)
            hyps[key] = outputs[example.fingerprint][example.kind]
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    result: dict[str, Any] = score(refs, hyps, meteor=meteor)
    for kind in sorted({e.kind for e in examples}):
        kind_keys = [k for k in refs if k.endswith(f":{kind}")]
        result[kind] = score({k: refs[k] for k in kind_keys}, {k: hyps[k] for k in kind_keys}, meteor=meteor)
    del meteor
    alts = [hyps[k] for k in hyps if k.endswith(":alt_text")]
    limit = settings.alt_text_limit
    result["alt_text_rule_pass"] = (
        sum(1 for t in alts if not alt_text_warnings(t, limit=limit)) / len(alts) if alts else None)
    result["n"] = len(refs)
    result["samples"] = [{"reference": refs[k][0], "caption": hyps[k]} for k in list(refs)[:6]]
    return result
