"""Offline phrase labels: a short piece of text that says what a feature's documents share.

:class:`PhraseInterpreter` names a latent in five steps, reading only the ``build`` part of the corpus
(see :mod:`hsae_core.fidelity` for the build / validation / test split):

1. **Contrast.** Weighted log-odds z-scores of every word and word pair in the latent's top build
   documents against the build documents where it is silent (the keyword labeller's statistics).
2. **Candidates.** The top documents are cut into sentences and clauses of 3 to 8 words; each span
   scores the sum of its distinctive terms' z-scores over the square root of its length, so short
   spans dense in distinctive words rank first, and the best ``n_spans`` distinct spans are kept.
   A clause that starts with a preposition ("To convolutional neural networks") is no candidate.
   **Terms** join them: runs of 2 to 4 content words that at least ``term_docs`` top documents share
   ("Fish tacos", "Graph neural networks"), without the pieces of a longer name ("Generative
   adversarial" before "networks"; "Style pizza" where "NY style pizza" is shared too) or a verb phrase
   ("Eat sushi"), the best ``n_terms``. Two composed phrases join the top keywords in a sentence frame
   ("mentions pho and broth").
3. **Shortlist.** With a text embedder, each candidate's embedding is compared with every build
   document: the ``n_compete`` candidates whose cosine best separates firing from silent build
   documents (AUC) go on.
4. **Competition.** The shortlist competes on the validation part (AUC); the winner's fidelity is
   measured on the test part only (AUC, and F1 at the validation threshold). A term competes
   ``term_margin`` higher, here and on the shortlist: a name reads better than a quoted clause that
   fits about as well (up to a margin of 0.04 the median test AUC did not move; ``bench/bench_labels.py
   --term-margin``). A candidate that says
   "not", "never", "no" or "n't" competes ``negation_margin`` lower: a feature about tacos named "I'm
   not a big fan of tacos" reads as its opposite, so a phrase that fits about as well without a
   negation wins (on the Yelp demo 26 of 222 labels had one, 16 now; median test AUC unchanged).
5. **Distinct names.** Latents labelled together never share a label where avoidable: the latent whose
   first choice fits best (validation AUC) keeps it, and one whose choice is held takes its next
   candidate (:mod:`hsae_core.unique_labels`; the candidates it passed over say which latent holds them).

The top keywords stay in ``Interpretation.keywords``. Without an embedder the best-scoring span is the
label and fidelity is unavailable.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .fidelity import EmbeddingJudge, LabelSplits, label_splits
from .interpret import Interpretation, KeywordInterpreter, _active, _check_inputs, _preprocess, snippet
from .progress import Overall, ProgressFn, progress_span, report
from .unique_labels import assign_distinct, mark_held

# Seconds per latent of phrase labelling's steps, with an empty label cache: contrasting terms and cutting
# candidates, embedding the candidates, choosing on validation. Measured naming a run's 20 latents on 2,000 reviews
# (bench/bench_progress.py --depth 2: 0.045, 0.84, 0.02) and relabelling the Yelp demo's 222 features on 4,000
# (0.06, 0.55, 0.07; 152 s at load 5.6): choosing grows with the documents.
PHRASE_STEPS = {"contrast": 0.05, "embed": 0.7, "choose": 0.05}
# sentence ends, line breaks, brackets, semicolons, colons and dashes end a span outright
_SENTENCE = re.compile(r"(?<=[.!?])\s+|[\n\r]+|\s*[;:()\[\]{}]\s*|\s+[-\u2013\u2014]+\s+|\s*\u2026\s*")
# commas and joining words start a new clause inside a long sentence
_CLAUSE = re.compile(
    r",\s+|\s+(?=(?:and|but|so|because|although|though|while|whereas|which|when|if|or|since|"
    r"unless|until|after|before)\s)",
    re.I,
)
# a list item's marker at the start of a line: "- ", "-" before a word, "• ", "* ", "1. ", "2) ", "(3) "
_LIST_MARK = re.compile(r"^\s*(?:[-\u2013\u2014\u2022\u00b7*+>]+\s*(?=[^\W\d_]|['\"\u2018\u201c])|\(?\d{1,2}[.)]\s+)")
_BARE_COMMA = re.compile(r",(?=[^\W\d_])")  # a comma straight before a letter (not 1,000)
_LEAD = {
    "and",
    "but",
    "so",
    "or",
    "of",
    "then",
    "also",
    "plus",
    "because",
    "although",
    "though",
    "while",
    "whereas",
    "which",
    "when",
    "if",
    "since",
    "unless",
    "until",
    "after",
    "before",
    "that",
    "as",
    "yet",
    "just",
    "oh",
    "well",
    "anyway",
    "however",
    "thus",
    "hence",
    "moreover",
    "furthermore",
    "additionally",
    # a pointer into a sentence the reader cannot see: "Such as the policy gradient algorithm", "Its
    # application to natural language", "Where the parser chooses an incorrect arc"
    "such",
    "namely",
    "including",
    "especially",
    "particularly",
    "like",
    "e.g",
    "i.e",
    "where",
    "whereby",
    "wherein",
    "whether",
    "its",
    "their",
    # a sentence adverb ties the clause to the one before it: "Consequently curves of genus 2"
    "consequently",
    "therefore",
    "thereby",
    "accordingly",
    "finally",
    "indeed",
    "instead",
    "meanwhile",
    "nevertheless",
    "nonetheless",
    "otherwise",
    "similarly",
    "likewise",
    "specifically",
    "notably",
    "importantly",
    "interestingly",
    "surprisingly",
    "unfortunately",
    "fortunately",
    "overall",
    "here",
    "honestly",
    "basically",
    "actually",
    "clearly",
    "obviously",
    "recently",
    "currently",
}
# a clause that starts with a preposition (or "itself", "than") is a piece of a sentence ("To convolutional neural
# networks", "In recent years, distributional models"); what it names is left to the terms ("Convolutional
# neural networks")
_NO_START = {"to", "in", "for", "on", "with", "from", "by", "at", "into", "via", "using", "about", "over"}
_NO_START |= {"itself", "themselves", "than"}
# a term that starts with a common verb is a verb phrase, not a name ("Eat sushi", "Recommend trying")
_VERB_START = {
    "eat", "ate", "get", "got", "go", "went", "make", "made", "take", "took", "try", "tried", "recommend",
    "love", "loved", "like", "liked", "want", "wanted", "come", "came", "find", "found", "give", "gave",
    "see", "saw", "say", "said", "know", "knew", "think", "thought", "feel", "felt", "need", "needed",
    "propose", "show", "showed", "present", "consider", "introduce", "provide", "improve", "compare",
    "achieve", "obtain", "apply", "allow", "enable", "keep", "kept", "let", "ask", "asked", "tell", "told",
    "leave", "left", "pay", "paid", "buy", "bought", "bring", "brought", "enjoy", "enjoyed", "stop",
}  # fmt: skip
# a finite verb after a term's first word makes it a subject and its verb cut from a clause, not a name
# ("Women Got Tired", "Little Girl Uses", "Father Takes Matters" from headlines whose A/B variants repeat a
# clause word for word); only forms that are seldom nouns, so "Equal pay" and "Puppy love" stay names
_FINITE_VERBS = {
    "got", "went", "took", "came", "gave", "said", "knew", "told", "kept", "brought", "bought", "ate", "became",
    "began", "wrote", "chose", "drove", "tried", "uses", "gets", "goes", "says", "wants", "gives", "tells", "asks",
    "tries", "comes", "thinks", "knows", "seems", "becomes", "takes", "makes",
}  # fmt: skip
# nouns that end in -ed ("seed" and "speed" are left alone as -eed words, "bed" and "red" as too short)
_NOT_PAST = {"hundred", "infrared", "seabed", "hotbed", "sickbed", "embed"}
# a span may not start with an auxiliary (a clause cut from its subject) or end on a function word
_AUX = {
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "can",
    "could",
    "will",
    "would",
    "shall",
    "should",
    "may",
    "might",
    "must",
    "has",
    "have",
    "had",
    "does",
    "do",
    "did",
}
_WORD = re.compile(r"\S+")
_URL = re.compile(r"\S*(?:https?://|www\.)\S*")
_TOKEN = re.compile(r"(?u)\b[^\W\d_]{2,}\b")


# The word sets below come from scikit-learn's English stop words. They are built on first use, not at import:
# importing scikit-learn costs about a second, and a run that refuses its input should not pay it.
@functools.cache
def _ends() -> frozenset:
    """Function words a label may not end on."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) - {"not", "no", "never", "nothing", "none", "everything", "enough", "well"}


@functools.cache
def _counted_stop() -> frozenset:
    """The stop words the keyword counts leave out (so a span's terms are looked up as they were counted)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from .interpret import _FOLDED_STOP, _NEGATIONS

    return frozenset((set(ENGLISH_STOP_WORDS) - _NEGATIONS) | _FOLDED_STOP)


_NEGATION = re.compile(r"\b(?:not|never|no|cannot)\b|n['\u2019]t\b", re.IGNORECASE)
# a word of a term: letters, inner hyphens and apostrophes ("state-of-the-art", "Geno's"); anything else
# (punctuation, a number, a symbol) ends the run of words a term is cut from
_TERM_PIECE = re.compile(r"[^\W\d_]+(?:[-'\u2019][^\W\d_]+)*|[^\w\s]+|\w+")
_TERM_WORD = re.compile(r"[^\W\d_]{2,}(?:[-'\u2019][^\W\d_]+)*")


@functools.cache
def _term_break() -> frozenset:
    """Words that end the run of words a term is cut from."""
    return (
        _ends()
        | _counted_stop()
        | frozenset(_LEAD)
        | frozenset(_AUX)
        | frozenset(_NO_START)
        | {"not", "no", "never", "none"}
    )


def is_negated(label: str) -> bool:
    """Whether a label says "not", "never", "no", "cannot" or "n't"."""
    return bool(_NEGATION.search(label))


def clause_piece(term: str) -> bool:
    """Whether a term reads as a subject and its verb rather than a name: a finite verb after its first word,
    or a last word in -ed ("Grocery Stores Ceased", "Weakly supervised", where adjectives in -ed come before
    the noun they describe, as in "Fried chicken")."""
    words = [w.lower() for w in term.split()]
    last = words[-1]
    past = len(last) >= 5 and last.endswith("ed") and not last.endswith("eed") and last not in _NOT_PAST
    return past or any(w in _FINITE_VERBS for w in words[1:])


def split_spans(text: str, min_words: int = 3, max_words: int = 12) -> list[str]:
    """Sentences and clauses of ``text`` with ``min_words``..``max_words`` words, cleaned, in reading order."""
    out = []
    text = _URL.sub(" ", str(text))
    for sentence in _SENTENCE.split(text):
        parts = [sentence] if len(_WORD.findall(sentence)) <= max_words else _CLAUSE.split(sentence)
        for part in parts:
            span = clean_span(part)
            n = len(span.split())
            if min_words <= n <= max_words and len(span) <= 100:
                out.append(span)
    return out


def split_terms(text: str, min_words: int = 2, max_words: int = 4) -> list[str]:
    """Runs of ``min_words``..``max_words`` adjacent content words of ``text`` ("fish tacos", "graph neural
    networks"), as written, in reading order: no stop word, number or punctuation inside. Every window of a
    longer run counts, so "spatiotemporal graph neural network" also gives "graph neural network"."""
    return [term for term, _, _ in _term_windows(text, min_words, max_words)]


def _term_windows(text: str, min_words: int, max_words: int) -> list[tuple[str, str, bool]]:
    """:func:`split_terms` as (term, the content word just before it or "", whether a content word follows)."""
    out: list[tuple[str, str, bool]] = []
    for sentence in _SENTENCE.split(_URL.sub(" ", str(text))):
        run: list[str] = []
        for piece in [*_TERM_PIECE.findall(sentence), ""]:  # "" closes the last run
            if _TERM_WORD.fullmatch(piece) and _preprocess(piece) not in _term_break():
                run.append(piece)
                continue
            for size in range(min_words, min(max_words, len(run)) + 1):
                out.extend(
                    (" ".join(run[i : i + size]), run[i - 1].lower() if i else "", i + size < len(run))
                    for i in range(len(run) - size + 1)
                )
            run = []
    return out


_END_MARKS = " \t'`*_~,.;:!?\u2018\u2019"
_DOUBLE_QUOTES = '"\u201c\u201d'


def _trim_ends(span: str) -> str:
    """Punctuation off both ends, and double quotes too, but not one that pairs with a quote inside the span:
    'are "used".' keeps its closing quote (stripping it left the label 'are "used')."""

    def n_quotes(s: str) -> int:
        return sum(s.count(q) for q in _DOUBLE_QUOTES)

    while True:
        before, span = span, span.strip(_END_MARKS)
        if len(span) > 1 and span[0] in _DOUBLE_QUOTES and span[-1] in _DOUBLE_QUOTES and not n_quotes(span[1:-1]):
            span = span[1:-1]  # the whole span quoted
        elif span[-1:] and span[-1] in _DOUBLE_QUOTES and n_quotes(span) % 2:
            span = span[:-1]  # a closing quote whose opening quote is outside the span
        elif span[:1] and span[0] in _DOUBLE_QUOTES and n_quotes(span) % 2:
            span = span[1:]
        if span == before:
            return span


def clean_span(text: str) -> str:
    """A span without leading joining words, surrounding quotes or trailing punctuation; "" for a piece of a
    sentence (a clause cut from its subject, or one that starts with a preposition)."""
    words = _LIST_MARK.sub("", str(text)).split()
    while words and words[0].lower().strip(",.;:!?\"'") in _LEAD:
        words = words[1:]
    span = _trim_ends(" ".join(words))
    span = _BARE_COMMA.sub(", ", span)  # "Sesame Chicken,Pork Egg Foo Young" reads as a list with its spaces
    if any(mark in span.lower() for mark in ("http", "www.", "@", "$", "\\", "etc")):
        return ""
    words = span.lower().split()
    if words and words[0] in _NO_START and ", " in span:  # "For valet, a very high price for parking": after it
        return clean_span(span.split(", ", 1)[1])
    if not words or words[0] in _AUX or words[0] in _NO_START or words[-1].strip("'\u2019") in _ends():
        return ""
    letters = sum(ch.isalpha() for ch in span)
    if letters < 0.6 * max(len(span.replace(" ", "")), 1):
        return ""
    return span[:1].upper() + span[1:] if span[:1].islower() and not span[1:2].isupper() else span


class PhraseInterpreter:
    """Offline phrase labels chosen and scored on documents they were not built from.

    ``embedder`` (an :class:`~hsae_core.embed.Embedder`) embeds candidate labels for the embedding
    judge; give the documents' embeddings from the same model to ``interpret(..., embeddings=)`` or
    they are embedded (through the disk cache). ``fractions`` are the build / validation / test shares.
    """

    method = "phrases"
    accepts_embeddings = True

    def __init__(
        self,
        embedder=None,
        n_spans: int = 24,
        n_compete: int = 3,
        top_docs: int = 30,
        min_words: int = 3,
        max_words: int = 8,
        n_examples: int = 3,
        seed: int = 0,
        fractions: Sequence[float] = (0.6, 0.2, 0.2),
        keywords: Optional[KeywordInterpreter] = None,
        templates: Sequence[str] = ("mentions {0}", "mentions {0} and {1}"),
        spans: bool = True,
        negation_margin: float = 0.01,
        n_terms: int = 8,
        term_docs: int = 3,
        max_term_words: int = 4,
        term_margin: float = 0.04,
    ):
        self.embedder, self.n_spans, self.n_compete = embedder, max(1, n_spans), max(1, n_compete)
        self.negation_margin, self.term_margin = negation_margin, term_margin
        self.top_docs, self.min_words, self.max_words = top_docs, min_words, max_words
        self.n_examples, self.seed, self.fractions = n_examples, seed, tuple(fractions)
        self.keywords = keywords or KeywordInterpreter(top_docs=50)
        self.templates, self.use_spans = tuple(templates), spans
        self.n_terms, self.term_docs, self.max_term_words = max(0, n_terms), max(1, term_docs), max(2, max_term_words)
        self.splits_: Optional[LabelSplits] = None
        self.judge_: Optional[EmbeddingJudge] = None

    # -- candidates -------------------------------------------------------------------------------
    def _term_index(self) -> dict[str, int]:
        if getattr(self, "_vocab_for", None) is not self.keywords.vocab_:
            self._index = {t: i for i, t in enumerate(self.keywords.vocab_)}
            self._vocab_for = self.keywords.vocab_
        return self._index

    def _span_terms(self, span: str) -> list[int]:
        """Vocabulary ids of the span's words and adjacent word pairs (stop words removed, as counted)."""
        tokens = [t for t in _TOKEN.findall(_preprocess(span)) if t not in _counted_stop()]
        index = self._term_index()
        grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
        return list({index[g] for g in grams if g in index})

    def candidates(self, texts: Sequence[str], top_rows: np.ndarray, scores_row: np.ndarray) -> list[tuple[str, float]]:
        """(span, text score) of the best distinct spans of the top documents, best first."""
        seen: dict[str, float] = {}
        ranked = []
        for r in top_rows[: self.top_docs]:
            for span in split_spans(texts[int(r)], self.min_words, self.max_words):
                key = span.lower()
                if key in seen:
                    continue
                score, ids = self._text_score(span, scores_row)
                seen[key] = score
                if score > 0:
                    ranked.append((span, score, ids))
        ranked.sort(key=lambda t: -t[1])
        return _best_distinct(ranked, self.n_spans)

    def _text_score(self, span: str, scores_row: np.ndarray) -> tuple[float, frozenset]:
        """The span's distinctive terms' z-scores summed over the square root of its length (short spans
        dense in distinctive words first), and the ids of those terms."""
        ids = self._span_terms(span)
        z = scores_row[ids] if ids else np.zeros(0)
        z = z[np.isfinite(z) & (z > 0)]
        return float(z.sum() / np.sqrt(len(span.split()) + 2.0)), frozenset(t for t in ids if scores_row[t] > 0)

    def terms(self, texts: Sequence[str], top_rows: np.ndarray, scores_row: np.ndarray) -> list[tuple[str, float]]:
        """(term, text score) of the best distinct multi-word terms shared by at least ``term_docs`` of the top
        documents ("fish tacos", "graph neural networks"), best first, each as its documents write it."""
        counted = _count_terms([texts[int(r)] for r in top_rows[: self.top_docs]], self.max_term_words)
        shared = {
            key
            for key, seen in counted.items()
            if seen.docs >= self.term_docs and key.split()[0] not in _VERB_START and not clause_piece(key)
        }
        ranked = []
        for key in shared:
            seen = counted[key]
            if seen.a_piece() or (seen.mostly_after_a_word() and any(f"{w} {key}" in shared for w in seen.before)):
                continue  # "style pizza", where the documents share "york style pizza" too: the longer name
            score, ids = self._text_score(key, scores_row)
            if score > 0:
                ranked.append((_as_written(seen.forms), score, ids))
        ranked.sort(key=lambda t: (-t[1], t[0]))
        return _best_distinct(ranked, self.n_terms)

    def composed(self, keywords: list[str]) -> list[tuple[str, float]]:
        """Phrases made of the top keywords in a sentence frame ("mentions pho and broth")."""
        distinct: list[str] = []
        for word in keywords:  # "graph" and "graphs" make one phrase, not two
            if not any(word.startswith(w) or w.startswith(word) for w in distinct):
                distinct.append(word)
        keywords, out = distinct, []
        for template in self.templates:
            need = max(int(n) for n in re.findall(r"\{(\d)\}", template)) + 1
            if len(keywords) >= need:
                out.append((template.format(*keywords[:need]), 0.0))
        return out

    # -- main -------------------------------------------------------------------------------------
    def interpret(
        self,
        texts: Sequence[str],
        codes,
        latents: Sequence[int],
        progress: Optional[ProgressFn] = None,
        embeddings: Optional[np.ndarray] = None,
    ) -> list[Interpretation]:
        """One phrase-labelled :class:`Interpretation` per latent (order kept), with test-part fidelity."""
        texts, codes_csc, latents = _check_inputs(texts, codes, latents)
        splits = self.splits_ = label_splits(len(texts), self.seed, self.fractions)
        build = splits.build
        build_codes = sp.csc_matrix(codes_csc.tocsr()[build])
        judge = self.judge_ = self._judge(texts, codes_csc, splits, embeddings)
        total = max(len(latents), 1)
        steps = Overall(progress, PHRASE_STEPS if judge is not None else {"contrast": 1, "choose": 0})
        contrast = steps.stage("contrast", "contrasting terms")
        report(contrast, 0, total)

        picked: dict[int, dict] = {}
        for block, scores, top_rows in self.keywords.score_blocks([texts[i] for i in build], build_codes, latents):
            for i, j in enumerate(block):
                report(contrast, len(picked), total, f"{len(picked)} of {len(latents)}")
                rows = build[top_rows[i]]  # back to corpus row ids
                words = self.keywords.keywords_from_scores(scores[i]) if len(rows) else []
                spans = self.candidates(texts, rows, scores[i]) if len(rows) and self.use_spans else []
                terms = self.terms(texts, rows, scores[i]) if len(rows) and self.n_terms else []
                found = [(s, sc, "keywords") for s, sc in self.composed(words)]
                found += [(s, sc, "term") for s, sc in terms] + [(s, sc, "clause") for s, sc in spans]
                picked[j] = {"keywords": words, "spans": _distinct(found), "rows": rows}
        if judge is not None:
            found = [s for p in picked.values() for s, _, _ in p["spans"]]
            embedding = steps.stage("embed", "embedding candidates")
            judge.embed_labels(found, progress=progress_span(embedding, 0, 1, f"{len(found):,} phrases"))
        choose = steps.stage("choose", "choosing on validation")
        ranked = {}
        for n, j in enumerate(latents):
            ranked[j] = self._rank(j, picked.get(j), texts, codes_csc, judge)
            report(choose, n + 1, total, f"{n + 1} of {len(latents)}")
        chosen = assign_distinct({j: r["preferences"] for j, r in ranked.items() if r["preferences"]})
        return [self._result(j, ranked[j], chosen.get(j), judge) for j in latents]

    def _judge(self, texts, codes_csc, splits, embeddings) -> Optional[EmbeddingJudge]:
        if self.embedder is None:
            return None
        if embeddings is None:
            from .embed import embed_texts

            embeddings = embed_texts(list(texts), self.embedder)
        return EmbeddingJudge(self.embedder, embeddings, codes_csc, splits, seed=self.seed)

    def _rank(self, j: int, found: Optional[dict], texts, codes_csc, judge) -> dict:
        """A latent's candidates in the order it would take them: the shortlist (best ``n_compete`` by build
        AUC) by validation AUC, then the rest by build AUC, used only when another latent holds the better
        ones. Without a judge, the spans' own order. Each preference is (label, validation AUC or None)."""
        rows_all, _ = _active(codes_csc, j)
        examples = [snippet(texts[r]) for r in (found["rows"] if found else rows_all)[: self.n_examples]]
        keywords = found["keywords"] if found else []
        spans = found["spans"] if found else []
        cands = [{"label": s, "kind": kind, "text_score": round(sc, 3)} for s, sc, kind in spans]
        plan = {"keywords": keywords, "examples": examples, "candidates": cands, "active": len(rows_all)}
        if not cands or judge is None:
            plan["preferences"] = [(c["label"], None) for c in cands]
            return plan
        build_auc = judge.auc_on(j, [c["label"] for c in cands], "build")
        for c, a in zip(cands, build_auc):
            c["build_auc"] = a
        order = sorted(range(len(cands)), key=lambda i: (-self._competing(cands[i], build_auc[i]), i))
        short, rest = order[: self.n_compete], order[self.n_compete :]
        val_auc = judge.auc_on(j, [cands[i]["label"] for i in short], "validation")
        for i, a in zip(short, val_auc):
            cands[i]["val_auc"] = a
        competing = [self._competing(cands[i], a) for i, a in zip(short, val_auc)]
        by_val = sorted(range(len(short)), key=lambda n: (-competing[n], n))
        short = [short[n] for n in by_val]  # ties keep the build-AUC order
        plan["preferences"] = [(cands[i]["label"], cands[i].get("val_auc")) for i in short + rest]
        return plan

    def _competing(self, candidate: dict, auc: Optional[float]) -> float:
        """What a candidate competes on: its AUC, ``term_margin`` more for a term (a name reads better than a
        quoted clause that fits about as well), ``negation_margin`` less for a negated phrase."""
        if auc is None:
            return -1.0
        bonus = self.term_margin if candidate["kind"] == "term" else 0.0
        return auc + bonus - (self.negation_margin if is_negated(candidate["label"]) else 0.0)

    def _result(self, j: int, plan: dict, choice: Optional[dict], judge) -> Interpretation:
        keywords, examples, cands = plan["keywords"], plan["examples"], plan["candidates"]
        if choice is None:  # no span: the keywords, or say why there is nothing to read
            if plan["active"] == 0:
                label, method = "(never active on these texts)", "phrases"
            elif keywords:
                label, method = ", ".join(keywords[:3]), "keywords (no phrase found)"
            else:
                label, method = "(no distinctive words)", "phrases"
            fidelity = judge.test_fidelity(j, label) if judge is not None and keywords else None
            return Interpretation(
                latent=j, label=label, method=method, keywords=keywords, examples=examples, fidelity=fidelity
            )
        mark_held(cands, choice)
        label = choice["label"]
        if judge is None:
            return Interpretation(
                latent=j,
                label=label,
                method="phrases (unscored)",
                keywords=keywords,
                examples=examples,
                candidates=cands,
            )
        return Interpretation(
            latent=j,
            label=label,
            method="phrases",
            keywords=keywords,
            examples=examples,
            candidates=cands,
            fidelity=judge.test_fidelity(j, label, choice["score"]),
        )


def _as_written(forms: dict[str, int]) -> str:
    """A term as its documents write it, first letter up: lower case where a third of them do ("Object
    recognition", though titles write "Object Recognition"), else the commonest form ("Santa Barbara")."""
    lower = [f for f in forms if f == f.lower()]
    if lower and 3 * forms[lower[0]] >= sum(forms.values()):
        term = lower[0]
    else:
        term = max(forms.items(), key=lambda kv: (kv[1], kv[0]))[0]
    return term[:1].upper() + term[1:]


def _distinct(candidates: list[tuple[str, float, str]]) -> list[tuple[str, float, str]]:
    """Candidates without a repeat (a term that is also a whole clause), first kept."""
    out, seen = [], set()
    for candidate in candidates:
        if candidate[0].lower() not in seen:
            seen.add(candidate[0].lower())
            out.append(candidate)
    return out


def _best_distinct(ranked: list[tuple[str, float, frozenset]], n: int) -> list[tuple[str, float]]:
    """The first ``n`` of ``ranked`` (text, score, distinctive term ids), skipping one whose distinctive words an
    earlier one already has: the same words in other clothes keep only their best-scoring wording."""
    out, seen = [], set()
    for text, score, ids in ranked:
        if ids not in seen:
            seen.add(ids)
            out.append((text, score))
            if len(out) >= n:
                break
    return out


class _TermSeen:
    """How a term occurs in a feature's top documents."""

    def __init__(self):
        self.docs = 0  # documents it occurs in
        self.forms: dict[str, int] = {}  # as written -> times
        self.followed = 0  # times another content word follows it
        self.before: dict[str, int] = {}  # content word just before it -> times

    def a_piece(self) -> bool:
        """Mostly the start of a longer term ("generative adversarial", networks), or mostly after one word
        ("adversarial networks", after "generative"): a piece of a longer name, not a name."""
        times = sum(self.forms.values())
        return 3 * max(self.followed, max(self.before.values(), default=0)) >= 2 * times

    def mostly_after_a_word(self) -> bool:
        """Another content word comes before it in two thirds of its occurrences, whichever word it is."""
        return 3 * sum(self.before.values()) >= 2 * sum(self.forms.values())


def _count_terms(texts: Sequence[str], max_words: int) -> dict[str, _TermSeen]:
    """Every term of 2..``max_words`` words in ``texts``, by its lower-case form."""
    seen: dict[str, _TermSeen] = {}
    for text in texts:
        in_this_text = set()
        for term, before, follows in _term_windows(text, 2, max_words):
            key = term.lower()
            stats = seen.setdefault(key, _TermSeen())
            stats.forms[term] = stats.forms.get(term, 0) + 1
            stats.followed += follows
            if before:
                stats.before[before] = stats.before.get(before, 0) + 1
            if key not in in_this_text:
                in_this_text.add(key)
                stats.docs += 1
    return seen


def text_embedder(embedding_model: Optional[str]):
    """An embedder that embeds new text like ``embedding_model`` embedded the documents, or None.

    Known here: the offline MiniLM model, a local sentence-transformers folder, and OpenAI models when
    ``OPENAI_API_KEY`` is set. Stored embeddings of unknown origin give None.
    """
    from pathlib import Path

    from . import settings
    from .embed import DEFAULT_MODEL_ID, get_embedder

    if not embedding_model:
        return None
    spec = str(embedding_model)
    if spec in (DEFAULT_MODEL_ID, "minilm", "all-MiniLM-L6-v2", "default"):
        return get_embedder(None)
    if spec.startswith("openai"):
        return get_embedder("openai:" + spec.split(":", 1)[-1].split("/", 1)[-1]) if settings.openai_api_key() else None
    if Path(spec).is_dir():
        return get_embedder(spec)
    return None
