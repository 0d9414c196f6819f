"""Distinct names for the features of one label set: where two latents would take the same label, the
one it fits better keeps it and the other takes its next candidate. Used by the keyword, phrase and LLM
labellers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Optional

_FRAME = "mentions "  # the keyword frames of hsae_core.labels.PhraseInterpreter ("mentions pho and broth")


def label_key(label: str) -> str:
    """Labels that read the same: case, spacing and end punctuation aside, and the keywords of a frame in any
    order ("mentions bar and beer" is "mentions beer and bar")."""
    key = " ".join(label.casefold().split()).strip(" .!?,;:")
    if key.startswith(_FRAME) and " and " in key:
        key = _FRAME + " and ".join(sorted(key[len(_FRAME) :].split(" and ")))
    return key


def label_words(label: str) -> frozenset:
    """A label's words, case, a plural 's' and the keyword frame aside: "mentions adversarial examples" and
    "Adversarial examples" have the same words, "mentions attack and adversarial examples" one more."""
    key = label_key(str(label))
    key = key[len(_FRAME) :] if key.startswith(_FRAME) else key
    words = [w for part in key.split(" and ") for w in part.split()]
    return frozenset(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words)


def assign_distinct(preferences: dict[int, list[tuple[str, Optional[float]]]]) -> dict[int, dict]:
    """One label per latent, no two alike where avoidable: ten features are not ten copies of one phrase.

    ``preferences`` maps each latent to its candidates, best first, as (label, score or None), the score
    being how well the label fits the latent on validation texts (an AUC, an F1: higher is better).
    Latents choose in order of how well their first choice fits (then the order given), each taking its
    best candidate no earlier latent holds; a latent whose every candidate is held keeps its first
    choice, shared. Returns, per latent, ``label``, its ``score`` and ``held_by`` (the better candidates it
    passed over: label -> the latent holding it)."""
    given = {j: n for n, j in enumerate(preferences)}

    def fit(j: int) -> float:
        score = preferences[j][0][1]
        return score if score is not None else -1.0

    holder: dict[str, int] = {}
    out: dict[int, dict] = {}
    for j in sorted(preferences, key=lambda j: (-fit(j), given[j])):
        prefs = preferences[j]
        free = next((p for p in prefs if label_key(p[0]) not in holder), prefs[0])
        passed = {}
        for label, _ in prefs:
            if label == free[0]:
                break
            passed[label] = holder[label_key(label)]
        holder.setdefault(label_key(free[0]), j)
        out[j] = {"label": free[0], "score": free[1], "held_by": passed}
    return out


def mark_held(candidates: list[dict], choice: dict) -> None:
    """Note on each candidate dict (``label`` key) that another latent holds it: ``held_by`` = that latent."""
    for c in candidates:
        if c["label"] in choice["held_by"]:
            c["held_by"] = choice["held_by"][c["label"]]


def count_shared(labels: Iterable[str]) -> int:
    """How many features carry a label another feature has too (read alike by :func:`label_key`). Placeholders
    in parentheses, such as "(never active on these texts)", say why there is no label and are not counted."""
    keys = [label_key(str(label)) for label in labels if not str(label).startswith("(")]
    return sum(n for n in Counter(keys).values() if n > 1)
