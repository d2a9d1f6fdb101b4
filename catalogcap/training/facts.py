"""Product facts in captions: the words that say colour, material, pattern, product type.

No fixed English list: the vocabulary is learnt from the reviewers' own texts. A *fact
kind* is a set of words that fill the same slot and exclude each other: they appear in the
same contexts (the words before and after them) but (almost) never in the same caption,
like "red"/"navy"/"olive" in "navy cotton shirt", "olive cotton shirt", or
"cotton"/"linen" before "shirt". Words that appear in most captions ("a", "for") or only
once carry no fact and are left out.

With it, a caption is compared with the reviewer's final text:
- *recall*: the reference's fact words that the caption states;
- *errors*: fact words in the caption that contradict the reference (a word of a kind the
  reference names, other than the reference's own word: "blue" where it says "red").
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")
MAX_TEXTS = 20_000  # a deterministic sample is plenty to learn a vocabulary
MAX_WORDS = 1_500


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


@dataclass
class FactVocabulary:
    """Fact kinds learnt from reviewed texts; each kind is a set of mutually exclusive words."""

    kinds: list[tuple[str, ...]] = field(default_factory=list)
    _kind_of: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._kind_of = {word: index for index, kind in enumerate(self.kinds) for word in kind}

    @classmethod
    def learn(cls, texts: Iterable[str], *, min_count: int = 2, max_share: float = 0.5,
              min_similarity: float = 0.4, max_cooccurrence: float = 0.05) -> FactVocabulary:
        """Fact kinds of `texts`: groups of words with shared contexts that (almost) never co-occur."""
        unique = sorted(set(texts), key=lambda t: hashlib.sha256(t.encode()).digest())[:MAX_TEXTS]
        docs = [words(t) for t in unique]
        if len(docs) < 4:
            return cls([])
        df = Counter(w for doc in docs for w in set(doc))
        limit = max_share * len(docs)
        candidates = [w for w, n in df.most_common() if min_count <= n <= limit and not w.isdigit()][:MAX_WORDS]
        if len(candidates) < 2:
            return cls([])
        index = {w: i for i, w in enumerate(candidates)}
        contexts: dict[str, int] = {}
        rows, cols = [], []
        presence = np.zeros((len(docs), len(candidates)), dtype=np.float32)
        for d, doc in enumerate(docs):
            padded = ["<s>", *doc, "</s>"]
            for position, word in enumerate(doc, start=1):
                i = index.get(word)
                if i is None:
                    continue
                presence[d, i] = 1.0
                for ctx in (f"L:{padded[position - 1]}", f"R:{padded[position + 1]}"):
                    rows.append(i)
                    cols.append(contexts.setdefault(ctx, len(contexts)))
        context = np.zeros((len(candidates), len(contexts)), dtype=np.float32)
        np.add.at(context, (np.asarray(rows), np.asarray(cols)), 1.0)
        # left and right contexts count alike: "ceramic"/"glass" share what comes before them
        # (colours) though never what follows (their product), and are one kind all the same
        similarity = np.zeros((len(candidates), len(candidates)), dtype=np.float32)
        for side in ("L:", "R:"):
            part = context[:, [i for ctx, i in contexts.items() if ctx.startswith(side)]]
            part = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-9)
            similarity += 0.5 * (part @ part.T)
        together = presence.T @ presence
        counts = np.diag(together).copy()
        exclusive = together <= max_cooccurrence * np.minimum(counts[:, None], counts[None, :])
        linked = (similarity >= min_similarity) & exclusive
        np.fill_diagonal(linked, False)
        # connected components of the "same slot, never together" graph are the fact kinds
        parent = list(range(len(candidates)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, j in zip(*np.nonzero(np.triu(linked))):
            parent[find(int(i))] = find(int(j))
        groups: dict[int, list[str]] = {}
        for i, word in enumerate(candidates):
            groups.setdefault(find(i), []).append(word)
        kinds = [tuple(sorted(g, key=lambda w: (-df[w], w))) for g in groups.values() if len(g) >= 2]
        kinds.sort(key=lambda kind: (-sum(df[w] for w in kind), kind))
        return cls(kinds)

    def to_json(self) -> list[list[str]]:
        return [list(kind) for kind in self.kinds]

    def label(self, kind: int) -> str:
        """A readable name for a kind: its most frequent words."""
        shown = self.kinds[kind][:3]
        return "/".join(shown) + ("/…" if len(self.kinds[kind]) > 3 else "")

    def facts(self, text: str) -> dict[int, set[str]]:
        """Fact kind -> the fact words of `text`."""
        found: dict[int, set[str]] = {}
        for word in words(text):
            kind = self._kind_of.get(word)
            if kind is not None:
                found.setdefault(kind, set()).add(word)
        return found

    def compare(self, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Fact recall and errors of (caption, reference) pairs, overall and per fact kind.

        `fact_recall`: share of the references' fact words the captions state; `fact_errors`:
        contradicting fact words per caption; `fact_error_rate`: per fact kind, the share of the
        captions' statements of that kind that contradict the reference, averaged with weights
        set by the references (how often they name each kind); `fact_exact`: share of
        captions that state every fact of their reference and contradict none.
        """
        stated = [0] * len(self.kinds)
        named = [0] * len(self.kinds)
        wrong = [0] * len(self.kinds)
        exact = 0
        for caption, reference in pairs:
            have, want = self.facts(caption), self.facts(reference)
            ok = True
            for kind, expected in want.items():
                got = have.get(kind, set())
                named[kind] += len(expected)
                stated[kind] += len(expected & got)
                wrong[kind] += len(got - expected)
                ok = ok and expected <= got and not got - expected
            exact += ok
        n = len(pairs)
        per_kind = {
            self.label(k): {"recall": stated[k] / named[k] if named[k] else None,
                            "errors": wrong[k] / n if n else 0.0,
                            "error_rate": wrong[k] / (stated[k] + wrong[k]) if stated[k] + wrong[k] else None,
                            "named": named[k]}
            for k in range(len(self.kinds)) if named[k]
        }
        total_named, total_stated, total_wrong = sum(named), sum(stated), sum(wrong)
        # each kind's share of wrong statements, weighted by how often the references name that kind:
        # weights that depend only on the references, so a model that starts naming the material (as
        # reviewers asked) is judged on how often it is right when it does, not on saying more
        rates = [wrong[k] / (stated[k] + wrong[k]) if stated[k] + wrong[k] else 0.0 for k in range(len(self.kinds))]
        return {
            "fact_recall": total_stated / total_named if total_named else None,
            "fact_errors": total_wrong / n if n else 0.0,
            "fact_error_rate": (sum(named[k] * rates[k] for k in range(len(self.kinds))) / total_named
                                if total_named else None),
            "fact_exact": exact / n if n else None,
            "fact_kinds": per_kind,
        }
