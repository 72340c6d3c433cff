"""Judges: scorers of final texts that are *not* the steering objectives, and text quality.

A method that steers with VADER and is judged by VADER can win by exploiting VADER. Every judge
here measures the same property as one steering objective with a different instrument; the
registry (:data:`JUDGES`, data) records which objective each judge measures. Adding a judge is
one function and one :class:`Judge` entry.

=================  ==================  ====================================================
objective          judge               instrument (higher is better)
=================  ==================  ====================================================
``sentiment``      ``polarity``        TextBlob polarity (pattern lexicon), in [-1, 1]
``brevity``        ``short``           minus the number of alphabetic words (regex
                                       ``[A-Za-z]+``: glued words still count)
``readability``    ``coleman-liau``    minus the Coleman-Liau index (letters and sentences
                                       per word; the objective uses syllables, Flesch)
``similarity``     ``overlap``         word-set Jaccard overlap with the reference text
``non-offensive``  (none)              no independent offline classifier is available
=================  ==================  ====================================================

Quality measures (no objective): :func:`nonword_rate` (alphabetic words not in an English word
list of 264k words, ``english-words`` web2 + gcide), :func:`distinct_n`, and the fluency of a
text under the base model (:func:`cage_adapters.evaluate.metrics.fluency`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cage_adapters.objectives.words import nonword_rate, words

__all__ = ["JUDGES", "Judge", "distinct_n", "judge_for", "nonword_rate", "words"]

def _polarity(texts: Sequence[str], reference: str | None = None) -> np.ndarray:
    from textblob import TextBlob

    return np.asarray([TextBlob(t).sentiment.polarity if t.strip() else 0.0 for t in texts])


def _short(texts: Sequence[str], reference: str | None = None) -> np.ndarray:
    return -np.asarray([len(words(t)) for t in texts], dtype=np.float64)


def _coleman_liau(texts: Sequence[str], reference: str | None = None) -> np.ndarray:
    import textstat

    return -np.asarray([float(textstat.coleman_liau_index(t)) if words(t) else 0.0
                        for t in texts])


def _overlap(texts: Sequence[str], reference: str | None = None) -> np.ndarray:
    ref = set(words(reference or ""))
    out = []
    for t in texts:
        w = set(words(t))
        out.append(len(w & ref) / len(w | ref) if (w | ref) else 0.0)
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class Judge:
    """A scorer of final texts for one objective (higher is better).

    Attributes
    ----------
    name : str
    measures : str
        The objective (registry name) whose property it measures.
    fn : callable
        ``fn(texts, reference=None) -> array`` of one float per text.
    description : str
    """

    name: str
    measures: str
    fn: Callable[..., np.ndarray]
    description: str

    def __call__(self, texts: Sequence[str], reference: str | None = None) -> np.ndarray:
        return np.asarray(self.fn(list(texts), reference), dtype=np.float64)


JUDGES: tuple[Judge, ...] = (
    Judge("polarity", "sentiment", _polarity, "TextBlob polarity (pattern lexicon)"),
    Judge("short", "brevity", _short, "minus the number of alphabetic words"),
    Judge("coleman-liau", "readability", _coleman_liau, "minus the Coleman-Liau index"),
    Judge("overlap", "similarity", _overlap, "word-set Jaccard overlap with the reference"),
)


def judge_for(objective: str) -> Judge:
    """The judge of a registered objective.

    Raises
    ------
    KeyError
        When no independent judge measures ``objective``; the message lists those that have one.
    """
    for j in JUDGES:
        if j.measures == objective:
            return j
    raise KeyError(
        f"no independent judge for objective {objective!r}; judged objectives: "
        f"{', '.join(j.measures for j in JUDGES)}"
    )


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of a set of texts (whitespace tokens), in [0, 1]."""
    grams: list[tuple[str, ...]] = []
    for t in texts:
        toks = t.split()
        grams.extend(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0
