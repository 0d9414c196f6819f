"""Naming latents on real Yelp reviews: offline keywords, and the LLM interpreter through a local OpenAI server."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import numpy as np
import pytest
from openai_server import openai_server, user_prompt  # noqa: F401  (fixture)

from hsae_core.errors import HsaeError, LLMError
from hsae_core.interpret import KeywordInterpreter, LLMInterpreter, fit, make_interpreter, parse_label, snippet
from hsae_core.llm import LLMClient
from hsae_core.sae import SparseAutoencoder

NEGATIVE = {
    "not",
    "no",
    "never",
    "worst",
    "bad",
    "rude",
    "terrible",
    "horrible",
    "awful",
    "disappointed",
    "disappointing",
    "manager",
    "refund",
    "minutes",
    "waited",
    "wait",
    "cold",
    "told",
    "asked",
    "dirty",
    "overpriced",
    "didn't",
    "wasn't",
    "don't",
    "complain",
    "poor",
    "worse",
    "mediocre",
    "bland",
    "nothing",
    "money",
}
POSITIVE = {
    "great",
    "delicious",
    "amazing",
    "best",
    "love",
    "loved",
    "excellent",
    "friendly",
    "awesome",
    "perfect",
    "fantastic",
    "favorite",
    "nice",
    "recommend",
    "highly",
    "fresh",
    "enjoyed",
    "wonderful",
    "tasty",
    "good",
}


@pytest.fixture(scope="module")
def yelp_codes(yelp_embedded):
    train, _, X_train, _ = yelp_embedded
    sae = SparseAutoencoder(m=32, k=4, max_epochs=20, seed=0).fit(X_train)
    return train["text"].tolist(), sae.transform(X_train), train["stars"].to_numpy(float)


def star_correlations(codes, stars) -> np.ndarray:
    present = (codes > 0).toarray().astype(float)
    return np.array(
        [np.corrcoef(present[:, j], stars)[0, 1] if present[:, j].std() > 0 else 0.0 for j in range(codes.shape[1])]
    )


def words_of(keywords) -> set[str]:
    return {w for kw in keywords for w in kw.split()}


def test_snippet_and_fit_cut_at_a_word_with_an_ellipsis():
    assert snippet("Word alignment over a high-quality MT based system", 39) == "Word alignment over a high-quality MT…"
    assert snippet("x" * 50, 39) == "x" * 39 + "…"  # no word to cut at
    assert snippet("two\nlines  here", 39) == "two lines here"
    # fit: at most the width, ellipsis included; a text that fits stays whole
    assert fit("Never was greeted by our waiter/waitress", 40) == "Never was greeted by our waiter/waitress"
    assert fit("Word alignment over a high-quality MT based system", 40) == "Word alignment over a high-quality MT…"
    assert fit("x" * 50, 40) == "x" * 39 + "…"


def test_keyword_labels_of_low_star_latents_read_negative(yelp_codes):
    texts, codes, stars = yelp_codes
    corr = star_correlations(codes, stars)
    low, high = list(np.argsort(corr)[:3]), list(np.argsort(corr)[-3:])
    items = {it.latent: it for it in KeywordInterpreter(n_keywords=8).interpret(texts, codes, low + high)}
    neg_hits_low = sum(len(words_of(items[j].keywords) & NEGATIVE) for j in low)
    neg_hits_high = sum(len(words_of(items[j].keywords) & NEGATIVE) for j in high)
    pos_hits_high = sum(len(words_of(items[j].keywords) & POSITIVE) for j in high)
    pos_hits_low = sum(len(words_of(items[j].keywords) & POSITIVE) for j in low)
    labels = {j: items[j].label for j in low + high}
    assert neg_hits_low >= 2 and neg_hits_low > neg_hits_high, labels
    assert pos_hits_high > pos_hits_low, labels
    for j in low + high:
        it = items[j]
        assert it.method == "keywords" and it.label == ", ".join(it.keywords[:3])
        assert it.candidates == [] and it.fidelity is None


def test_latents_with_the_same_top_keywords_get_distinct_keyword_labels(yelp_codes):
    import scipy.sparse as sp

    texts, codes, _ = yelp_codes
    twin = sp.hstack([codes[:, [2]], codes[:, [2]], codes[:, [5]]]).tocsr()  # latents 0 and 1 fire alike
    items = KeywordInterpreter().interpret(texts, twin, [0, 1, 2])
    assert items[0].keywords == items[1].keywords and len(items[0].keywords) >= 4
    kw = items[1].keywords
    # the first listed keeps the top three; its twin swaps the third for the fourth
    assert items[0].label == ", ".join(kw[:3])
    assert items[1].label == ", ".join([kw[0], kw[1], kw[3]])
    assert items[2].label == ", ".join(items[2].keywords[:3])


def test_keyword_details(yelp_codes):
    texts, codes, _ = yelp_codes
    codes = codes.tolil()
    codes[:, 31] = 0  # a latent that never fires
    codes = codes.tocsr()
    for method in ("logodds", "ctfidf"):
        items = KeywordInterpreter(method=method, n_examples=2).interpret(texts, codes, [0, 5, 31])
        assert [it.latent for it in items] == [0, 5, 31]
        for it in items[:2]:
            assert len(it.keywords) == 6 and len(set(it.keywords)) == 6
            bigram_words = words_of(k for k in it.keywords if " " in k)
            assert not bigram_words & {k for k in it.keywords if " " not in k}, it.keywords
            top = int(np.argmax(codes[:, it.latent].toarray().ravel()))
            assert it.examples[0] == snippet(texts[top]) and len(it.examples) == 2
        assert items[2].label.startswith("(never active") and items[2].keywords == []
    with pytest.raises(HsaeError, match="does not exist"):
        KeywordInterpreter().interpret(texts, codes, [99])
    with pytest.raises(HsaeError, match="texts"):
        KeywordInterpreter().interpret(texts[:10], codes, [0])


# ------------------------------------------------------------------ a small, deterministic "LLM"
STOP5 = {
    "there",
    "their",
    "about",
    "would",
    "which",
    "could",
    "these",
    "those",
    "other",
    "every",
    "where",
    "after",
    "because",
    "really",
    "always",
    "place",
}
FIRES, SILENT = "Passages where it fires strongly:", "Passages where it stays silent:"


def passages(block: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", block, re.M)]


def naming_parts(prompt: str) -> tuple[list[str], list[str]]:
    pos = prompt.split(FIRES, 1)[1].split(SILENT, 1)[0]
    neg = prompt.split(SILENT, 1)[1].split("\n\nName what", 1)[0]
    return passages(pos), passages(neg)


def judge_parts(prompt: str) -> tuple[str, str]:
    text = prompt.split("<<<\n", 1)[1].split("\n>>>", 1)[0]
    label = prompt.split("Description: ", 1)[1].split("\n", 1)[0]
    return text, label


def fake_llm(request):
    """Names a latent after the word most over-represented in the firing passages; judges by that word."""
    prompt = user_prompt(request)
    if FIRES in prompt:
        pos, neg = naming_parts(prompt)
        count = lambda block: Counter(w for p in block for w in set(re.findall(r"[a-z]{5,}", p.lower())) - STOP5)
        cp, cn = count(pos), count(neg)
        word = max(cp, key=lambda w: (cp[w] / len(pos) - cn[w] / max(len(neg), 1), w))
        return f"mentions {word} [{hashlib.sha1(prompt.encode()).hexdigest()[:6]}]"
    text, label = judge_parts(prompt)
    return "Yes." if label.split()[1] in text.lower() else "No"


def client_for(server, tmp_path, **kw) -> LLMClient:
    return LLMClient(
        model="fake-model",
        api_key="test",
        base_url=server.base_url,
        cache_path=tmp_path / "c.sqlite",
        backoff=0.01,
        **kw,
    )


def test_llm_interpreter_scores_candidates_on_unseen_texts(yelp_codes, openai_server, tmp_path):
    texts, codes, _ = yelp_codes
    openai_server.responder = fake_llm
    client = client_for(openai_server, tmp_path)
    interp = make_interpreter("llm", client=client, n_candidates=3, n_examples=8, n_eval=12, n_test=16)
    latents = [1, 4, 9]
    items = interp.interpret(texts, codes, latents)
    assert [it.latent for it in items] == latents
    row_of = {snippet(t, 2000)[:80]: i for i, t in enumerate(texts)}
    part_of = {int(r): name for name in ("build", "validation", "test") for r in interp.splits_.part(name)}

    shown_by_label = {}
    for req in openai_server.chat_requests():
        prompt = user_prompt(req)
        if FIRES in prompt:
            assert req["messages"][0]["role"] == "system"
            pos, neg = naming_parts(prompt)
            shown_by_label[fake_llm(req)] = {p[:80] for p in pos + neg}
    judged = {"validation": 0, "test": 0}
    winners = {it.label for it in items}
    for req in openai_server.chat_requests():
        prompt = user_prompt(req)
        if FIRES not in prompt:
            text, label = judge_parts(prompt)
            assert text[:80] not in shown_by_label[label], "a candidate was scored on a text it was named from"
            part = part_of[row_of[text[:80]]]
            assert part in ("validation", "test") and (part == "validation" or label in winners)
            judged[part] += 1
    for plan in interp.plans_.values():  # naming shows build texts only; choosing and scoring use other parts
        assert {part_of[int(r)] for r in plan.shown_rows} == {"build"}
        assert {part_of[int(r)] for r in plan.val_rows} == {"validation"}
        assert {part_of[int(r)] for r in plan.test_rows} == {"test"}
    assert judged["validation"] > 0 and judged["test"] > 0

    for it in items:
        assert it.method == "llm:fake-model" and it.label.startswith("mentions ")
        assert 1 <= len(it.candidates) <= 3 and it.keywords and it.examples
        best = max(c["f1"] for c in it.candidates)  # the winner has the best validation F1 ...
        assert [c["f1"] for c in it.candidates if c["label"] == it.label] == [best]
        plan = interp.plans_[it.latent]
        assert it.fidelity["label"] == it.label and it.fidelity["n_scored"] == len(plan.test_rows) > 0  # ... on test
        assert it.fidelity["judge"] == "llm:fake-model" and 0.0 <= it.fidelity["f1"] <= 1.0
        for c in it.candidates:
            assert 0.0 <= c["precision"] <= 1.0 and 0.0 <= c["recall"] <= 1.0 and -1.0 <= c["correlation"] <= 1.0
            assert c["n_scored"] == len(plan.val_rows) and c["n_failed"] == 0
        assert 0 < len(plan.val_rows) <= 12 and len(plan.test_rows) <= 16  # balanced: half firing, half silent
        assert np.mean(codes[plan.val_rows, it.latent].toarray() > 0) == 0.5
    assert interp.stats_["labels_failed"] == 0 and interp.stats_["judgements_failed"] == 0

    # the whole thing again: answered from the cache, no HTTP request, same result
    openai_server.requests.clear()
    again = make_interpreter(
        "llm", client=client_for(openai_server, tmp_path), n_candidates=3, n_examples=8, n_eval=12, n_test=16
    )
    assert [it.label for it in again.interpret(texts, codes, latents)] == [it.label for it in items]
    assert openai_server.requests == []


@pytest.mark.parametrize("sampling", ["bins", "hard_negatives"])
def test_sampling_strategies_show_firing_and_silent_texts(yelp_codes, openai_server, tmp_path, sampling):
    texts, codes, _ = yelp_codes
    openai_server.responder = fake_llm
    j = int(np.argmax(np.diff(codes.tocsc().indptr)))  # the most active latent
    activation = codes[:, j].toarray().ravel()
    row_of = {snippet(t, 600)[:80]: i for i, t in enumerate(texts)}
    interp = LLMInterpreter(
        client_for(openai_server, tmp_path), sampling=sampling, n_candidates=2, n_examples=6, n_eval=10
    )
    (item,) = interp.interpret(texts, codes, [j])
    assert item.method == "llm:fake-model"
    naming = [user_prompt(r) for r in openai_server.chat_requests() if FIRES in user_prompt(r)]
    assert len(naming) == 2
    csr = codes.tocsr()
    for prompt in naming:
        pos, neg = naming_parts(prompt)
        pos_rows, neg_rows = [row_of[p[:80]] for p in pos], [row_of[p[:80]] for p in neg]
        assert len(pos_rows) == 6 and all(activation[r] > 0 for r in pos_rows)
        assert neg_rows and all(activation[r] == 0 for r in neg_rows)
    if sampling == "bins":  # examples spread over the activation range, not only the top
        pos_acts = activation[[row_of[p[:80]] for p in naming_parts(naming[0])[0]]]
        assert pos_acts.min() < np.quantile(activation[activation > 0], 0.5)
    else:  # hard negatives fire the same other latents as the positives, more than random silent texts do
        pos, neg = naming_parts(naming[0])
        centroid = np.asarray(csr[[row_of[p[:80]] for p in pos]].mean(axis=0)).ravel()
        centroid[j] = 0
        silent = np.flatnonzero(activation == 0)
        hard = csr[[row_of[p[:80]] for p in neg]] @ centroid
        assert hard.mean() > (csr[silent] @ centroid).mean()


def test_llm_labels_of_one_set_are_distinct(yelp_codes, openai_server, tmp_path):
    texts, codes, _ = yelp_codes

    def generic(req):  # every latent is first named "mentions place", which the judge says fits every text
        prompt = user_prompt(req)
        if FIRES in prompt:
            return "mentions place" if req["temperature"] == 0 else "mentions food"
        return "Yes" if judge_parts(prompt)[1] == "mentions place" else "No"

    openai_server.responder = generic
    interp = LLMInterpreter(client_for(openai_server, tmp_path), n_candidates=2, n_examples=5, n_eval=8, n_test=8)
    first, second = interp.interpret(texts, codes, [1, 4])
    # both fit "mentions place" equally (F1 2/3 on a balanced sample): the first listed keeps it, the other
    # takes its next candidate and says who holds the better one; each is scored on test under its own label
    assert (first.label, second.label) == ("mentions place", "mentions food")
    held = {c["label"]: c.get("held_by") for c in second.candidates}
    assert held == {"mentions place": 1, "mentions food": None}
    assert all("held_by" not in c for c in first.candidates)
    assert second.fidelity["label"] == "mentions food" and second.fidelity["f1"] == 0.0
    assert first.fidelity["label"] == "mentions place" and first.fidelity["f1"] == pytest.approx(2 / 3, abs=0.01)


def test_llm_failures_never_crash_and_fall_back_to_keywords(yelp_codes, openai_server, tmp_path):
    texts, codes, _ = yelp_codes
    openai_server.responder = lambda req: (500, {"error": {"message": "down"}}, {})
    client = client_for(openai_server, tmp_path, max_retries=1)
    items = LLMInterpreter(client, n_candidates=2, n_examples=5, n_eval=6).interpret(texts, codes, [2, 3])
    assert [it.method for it in items] == ["keywords (LLM failed)"] * 2
    assert all(it.label and it.keywords for it in items)
    assert client.stats["failures"] == 4 and client.stats["retries"] == 4

    # garbage names are recorded and skipped; unparseable judgements are counted, not guessed
    def garbage(req):
        prompt = user_prompt(req)
        if FIRES in prompt:
            return "Sorry, I cannot help with that." if req["temperature"] == 0 else "Label: **talks about pizza**"
        return "it depends"

    openai_server.responder = garbage
    interp = LLMInterpreter(client_for(openai_server, tmp_path / "b"), n_candidates=2, n_examples=5, n_eval=6, n_test=6)
    (item,) = interp.interpret(texts, codes, [2])
    assert item.label == "talks about pizza" and item.method == "llm:fake-model"
    assert item.fidelity["n_failed"] == 6 and item.fidelity["f1"] is None
    assert interp.stats_["labels_failed"] == 1 and interp.stats_["judgements_failed"] == 12  # validation + test

    openai_server.responder = lambda req: ""
    no_fallback = LLMInterpreter(client_for(openai_server, tmp_path / "c"), n_candidates=1, keyword_fallback=False)
    (item,) = no_fallback.interpret(texts, codes, [2])
    assert "failed" in item.method and "LLM failed" in item.label


def test_parse_label_and_make_interpreter():
    assert parse_label('Label: "Mentions long waits."\nBecause...') == "Mentions long waits"
    assert parse_label("- praises the dessert") == "praises the dessert"
    assert parse_label("<think>hmm</think>complains about parking") == "complains about parking"
    assert parse_label("I'm sorry, I can't do that") is None
    assert parse_label("12345") is None and parse_label(None) is None and parse_label("word " * 40) is None
    assert isinstance(make_interpreter("keywords", method="ctfidf"), KeywordInterpreter)
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        make_interpreter("llm")
    with pytest.raises(HsaeError, match="phrases"):
        make_interpreter("topics")
    assert isinstance(make_interpreter("phrases", embedding_model="stored"), KeywordInterpreter)  # cannot embed labels
