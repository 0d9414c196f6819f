"""Steered search on a real workspace: untouched sliders reproduce the baseline exactly; moving one changes it."""

from __future__ import annotations

import numpy as np
import pytest
from ws_fixtures import small_workspace  # noqa: F401

from hsae_core.errors import DataError
from hsae_core.search import NPROBE_STEPS, SteeredSearch, build_search_index, tune_nprobe
from hsae_core.workspace import Workspace


@pytest.fixture(scope="module")
def ws(small_workspace):
    return Workspace.open(small_workspace)


@pytest.fixture(scope="module")
def engine(ws):
    return SteeredSearch(np.asarray(ws.embeddings), ws.sae, ws.codes, index=ws.index)


def _brute_force(E, q, k):
    En = E / np.linalg.norm(E, axis=1, keepdims=True)
    return np.argsort(-(En @ (q / np.linalg.norm(q))), kind="stable")[:k]


def test_unsteered_search_is_exact_cosine_ranking(ws, engine):
    q = ws.embed_query("the pizza was cold and the waiter was rude")
    res = engine.search(q, {}, k=10)
    E = np.asarray(ws.embeddings)
    np.testing.assert_array_equal(res.ids, _brute_force(E, q, 10))
    assert not res.changed and res.entered == [] and res.left == []


def test_untouched_sliders_reproduce_the_unsteered_ranking_exactly(ws, engine):
    q = np.asarray(ws.embeddings[17])  # "more like this document"
    latents, acts = engine.query_code(q)
    assert len(latents) > 0
    same = {int(l): float(a) for l, a in zip(latents, acts)}  # every slider left at its own value
    base = engine.search(q, {}, k=20)
    steered = engine.search(q, same, k=20)
    np.testing.assert_array_equal(steered.ids, base.ids)
    np.testing.assert_array_equal(steered.scores, base.scores)
    assert base.ids[0] == 17


def test_moving_a_slider_changes_the_ranking_and_reports_the_diff(ws, engine):
    q = ws.embed_query("amazing sushi, fresh fish, friendly chef")
    latents, acts = engine.query_code(q)
    edits = {int(latents[0]): -2.0 * float(acts[0])}  # push the strongest feature below zero
    res = engine.search(q, edits, k=20)
    assert res.changed
    assert len(res.entered) == len(res.left) > 0
    assert set(res.entered).isdisjoint(res.baseline_ids) and set(res.left) <= set(res.baseline_ids.tolist())
    assert int(latents[0]) not in res.query_latents
    # For a main-level feature the steered vector is decode(z') + (x - decode(z)) ...
    main_level = ws.sae.level_names[0]
    j = next(int(j) for j in latents if ws.sae.level_names[j] == main_level)
    steered, z_new = engine.steer(q, {j: 0.0})
    z = engine.code(q)
    expected = ws.sae.decode(z_new[None])[0] + (q - ws.sae.decode(z[None])[0])
    np.testing.assert_allclose(steered, expected, atol=1e-5)
    # ... and a level's feature moves the query along its own direction, as its level's reconstruction would.
    j = next(int(j) for j in latents if ws.sae.level_names[j] != main_level)
    steered, z_new = engine.steer(q, {j: 0.0})
    np.testing.assert_allclose(steered, q - z[j] * ws.sae.decoder_directions[j], atol=1e-5)
    # Boosting a feature pulls in documents where that feature fires.
    target = int(np.argmax(np.asarray((ws.codes > 0).sum(axis=0)).ravel()[:]))
    boosted = engine.search(q, {target: 5.0}, k=20)
    fires = np.asarray(ws.codes[boosted.ids][:, target].todense()).ravel() > 0
    base_fires = np.asarray(ws.codes[boosted.baseline_ids][:, target].todense()).ravel() > 0
    assert fires.sum() > base_fires.sum()


def test_shared_features_are_active_in_both_query_and_hit(ws, engine):
    q = np.asarray(ws.embeddings[3])
    res = engine.search(q, {}, k=10)
    for doc, shared in zip(res.ids, res.shared):
        row = set(ws.codes[doc].indices.tolist())
        assert set(shared) <= row and set(shared) <= set(res.query_latents.tolist())
    assert res.shared[0] == res.query_latents.tolist()  # the document itself shares everything


def test_bad_edits_and_vectors_are_clear_errors(engine):
    with pytest.raises(DataError, match="does not exist"):
        engine.steer(np.zeros(384, np.float32) + 0.1, {10_000: 1.0})
    with pytest.raises(DataError, match="dimensions"):
        engine.search(np.ones(12, np.float32))
    for k in (0, -3, 2.5):  # k 0 returned one hit without a word
        with pytest.raises(DataError, match=r"^`k` must be a whole number >= 1, got"):
            engine.search(np.ones(384, np.float32), k=k)


def test_more_like_this_can_leave_out_the_query_document(ws, engine):
    q = np.asarray(ws.embeddings[17])
    res = engine.search(q, {}, k=10, exclude=[17])
    E = np.asarray(ws.embeddings)
    np.testing.assert_array_equal(res.ids, [d for d in _brute_force(E, q, 11) if d != 17][:10])
    latents, acts = engine.query_code(q)
    steered = engine.search(q, {int(latents[0]): 3 * float(acts[0])}, k=10, exclude=[17])
    assert 17 not in steered.ids.tolist() and 17 not in steered.baseline_ids.tolist() and len(steered.ids) == 10


def test_a_text_that_is_in_the_corpus_twice_is_one_result(ws):
    """The arXiv cs sample holds 673 distinct abstracts in 800 rows; a result list that shows one abstract twice
    wastes a slot. Copies of real reviews are appended: each text comes back once, and "more like this" leaves
    out the copies of the query document as it leaves out the document itself."""
    import scipy.sparse as sp

    E = np.asarray(ws.embeddings)
    q = ws.embed_query("the pizza was cold and the waiter was rude")
    first, second = _brute_force(E, q, 2)
    copies = [first, first, second, 17]
    E2 = np.vstack([E, E[copies]])
    codes2 = sp.vstack([ws.codes, ws.codes[copies]]).tocsr()
    engine2 = SteeredSearch(E2, ws.sae, codes2)
    res = engine2.search(q, {}, k=10)
    np.testing.assert_array_equal(res.ids, _brute_force(E, q, 10))  # as if the copies were not there
    np.testing.assert_array_equal(res.baseline_ids, res.ids)
    n = len(E)
    like = engine2.search(E[17], {}, k=10, exclude=[17])
    assert 17 not in like.ids.tolist() and n + 3 not in like.ids.tolist() and len(like.ids) == 10
    # documents with no active feature are not copies of one another, however alike their (empty) codes
    silent = ws.codes.tolil()
    top = _brute_force(E, q, 10)
    for d in top[:3]:
        silent[int(d)] = 0
    engine3 = SteeredSearch(E, ws.sae, silent.tocsr())
    np.testing.assert_array_equal(engine3.search(q, {}, k=10).ids, top)


def test_ivf_index_beyond_the_exact_limit_is_tuned_to_the_target_recall(ws):
    """Above the exact limit: IVF-Flat, nprobe chosen at build time on held-out rows so recall@10 >= target."""
    E = np.asarray(ws.embeddings)
    info = build_search_index(E, exact_limit=100, target_recall=0.95, n_queries=100)
    assert type(info.index).__name__ == "IndexIVFFlat" and info.kind == "ivf"
    assert info.nlist == round(np.sqrt(len(E))) and 1 <= info.nprobe <= info.nlist
    assert info.recall_at_10 >= 0.95 and info.n_queries == 100
    assert info.index.nprobe == info.nprobe and info.manifest()["nprobe"] == info.nprobe
    approx = SteeredSearch(E, ws.sae, ws.codes, index=info.index, nprobe=info.nprobe)
    recall = []
    for i in range(0, 600, 30):  # the tuned index, measured here on other queries, through the product's search
        exact = set(_brute_force(E, E[i], 10).tolist())
        recall.append(len(exact & set(approx.search(E[i], k=10).ids.tolist())) / 10)
    assert np.mean(recall) >= 0.9


def test_nprobe_tuning_picks_the_first_setting_that_reaches_the_target(ws):
    """Checked against brute-force numpy neighbours (each query's own row excluded), step by step."""
    E = np.asarray(ws.embeddings)
    En = E / np.linalg.norm(E, axis=1, keepdims=True)
    index = build_search_index(E, exact_limit=100, target_recall=1.0).index
    ids = np.arange(1, len(E), 7)
    truth = [set(np.argsort(-(En @ En[i]), kind="stable")[1:11].tolist()) for i in ids]

    def recall_at(nprobe):
        index.nprobe = nprobe
        _, found = index.search(En[ids], 11)
        return np.mean([len(t & {int(f) for f in row if f != i}) / 10 for t, row, i in zip(truth, found, ids)])

    steps = [p for p in NPROBE_STEPS if p < index.nlist] + [index.nlist]
    recalls = {p: recall_at(p) for p in steps}
    target = float(np.median(list(recalls.values())))
    chosen, measured = tune_nprobe(index, En[ids], ids, target)
    assert measured >= target and abs(measured - recalls[chosen]) < 1e-9
    assert all(recalls[p] < target for p in steps if p < chosen)
    assert recalls[index.nlist] == 1.0  # probing every list is exhaustive


def test_exact_index_up_to_the_limit(ws):
    info = build_search_index(np.asarray(ws.embeddings), exact_limit=10_000)
    assert type(info.index).__name__ == "IndexFlatIP" and info.kind == "exact" and info.index.ntotal == len(ws)
