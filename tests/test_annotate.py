"""Holdout annotation on real Yelp reviews: activation presence offline, and LLM yes/no through a local server."""

from __future__ import annotations

import numpy as np
import pytest
from openai_server import openai_server, user_prompt  # noqa: F401  (fixture)

from hsae_core.annotate import ActivationAnnotator, LLMAnnotator, make_annotator
from hsae_core.errors import HsaeError, LLMError
from hsae_core.interpret import Interpretation, KeywordInterpreter, snippet
from hsae_core.llm import LLMClient
from hsae_core.sae import SparseAutoencoder


@pytest.fixture(scope="module")
def holdout(yelp_embedded):
    train, hold, X_train, X_hold = yelp_embedded
    sae = SparseAutoencoder(m=32, k=4, max_epochs=20, seed=0).fit(X_train)
    names = KeywordInterpreter().interpret(train["text"].tolist(), sae.transform(X_train), [0, 7, 20])
    return hold["text"].tolist()[:60], sae.transform(X_hold)[:60], names


def test_activation_annotator_marks_where_the_latent_fires(holdout):
    texts, codes, names = holdout
    ann = make_annotator("activation").annotate(texts=texts, codes=codes, interpretations=names)
    assert ann.shape == (60, 3) and set(np.unique(ann)) <= {0.0, 1.0}
    for h, it in enumerate(names):
        assert np.array_equal(ann[:, h] == 1, codes[:, it.latent].toarray().ravel() > 0)
    assert ann.sum() > 0
    with pytest.raises(HsaeError, match="holdout texts"):
        ActivationAnnotator().annotate(texts=texts[:5], codes=codes, interpretations=names)


def judge_by_word(request):
    """Yes when the label's last word is in the passage; an evasive answer for passages about 'pizza'."""
    prompt = user_prompt(request)
    text = prompt.split("<<<\n", 1)[1].split("\n>>>", 1)[0].lower()
    word = prompt.split("Description: ", 1)[1].split("\n", 1)[0].split()[-1]
    if "pizza" in text:
        return "I am not sure."
    return "yes" if word in text else "no"


def test_llm_annotator_asks_per_text_and_hypothesis(holdout, openai_server, tmp_path):
    texts, codes, _ = holdout
    hyps = [
        Interpretation(latent=0, label="mentions service", method="llm:x"),
        Interpretation(latent=1, label="mentions chicken", method="llm:x"),
    ]
    openai_server.responder = judge_by_word
    client = LLMClient(
        model="judge-model",
        api_key="k",
        base_url=openai_server.base_url,
        cache_path=tmp_path / "c.sqlite",
        backoff=0.01,
    )
    annotator = make_annotator("llm", client=client)
    assert annotator.method == "llm:judge-model"
    ann = annotator.annotate(texts=texts, codes=codes, interpretations=hyps)
    assert ann.shape == (60, 2)
    seen = [snippet(t, 2000).lower() for t in texts]  # what the LLM was shown
    pizza = np.array(["pizza" in t for t in seen])
    assert pizza.any() and np.isnan(ann[pizza]).all() and not np.isnan(ann[~pizza]).any()
    for h, word in enumerate(["service", "chicken"]):
        expected = np.array([word in t for t in seen], dtype=float)
        assert np.array_equal(ann[~pizza, h], expected[~pizza])
    assert annotator.stats_["failed"] == 2 * pizza.sum()
    assert len(openai_server.chat_requests()) == 120

    # cached: a second annotation makes no request
    openai_server.requests.clear()
    again = LLMAnnotator(
        LLMClient(model="judge-model", api_key="k", base_url=openai_server.base_url, cache_path=tmp_path / "c.sqlite")
    )
    assert np.array_equal(again.annotate(texts=texts, codes=None, interpretations=hyps), ann, equal_nan=True)
    assert openai_server.requests == []


def test_llm_annotator_truncates_and_survives_a_dead_server(holdout, openai_server, tmp_path):
    texts, codes, names = holdout
    openai_server.responder = lambda req: (503, {"error": {"message": "overloaded"}}, {"retry-after": "0"})
    client = LLMClient(
        model="m",
        api_key="k",
        base_url=openai_server.base_url,
        cache_path=tmp_path / "c.sqlite",
        max_retries=1,
        backoff=0.01,
    )
    long_text = "word " * 5000
    ann = LLMAnnotator(client, max_chars=300).annotate(
        texts=texts[:3] + [long_text], codes=None, interpretations=names[:2]
    )
    assert ann.shape == (4, 2) and np.isnan(ann).all()
    assert client.stats["failures"] == 8
    assert max(len(user_prompt(r)) for r in openai_server.chat_requests()) < 300 + 400


def test_make_annotator_errors():
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        make_annotator("llm")
    with pytest.raises(HsaeError, match="activation"):
        make_annotator("crowd")
