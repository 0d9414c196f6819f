"""The LLM refinement loop and LLM label sets, against a real local OpenAI-compatible server.

The server's "model" is small and deterministic: it judges a label "mentions WORD" by whether WORD is in
the passage, names a latent after the word most over-represented in the passages it is shown, and rewrites
a label after the word that best covers the hits and misses it is shown while avoiding the false alarms.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter

import numpy as np
import pytest
from openai_server import openai_server, user_prompt  # noqa: F401  (fixture)
from ws_fixtures import small_workspace  # noqa: F401

from hsae_core.fidelity import label_splits
from hsae_core.interpret import snippet
from hsae_core.labelsets import label_features, label_sets, load_label_set
from hsae_core.llm import LLMClient
from hsae_core.refine import Budget, BudgetedClient, Refiner, estimate_llm_labels
from hsae_core.sae import SparseAutoencoder

STOP = {
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
    "food",
    "great",
    "good",
    "ordered",
}
FIRES, SILENT = "Passages where it fires strongly:", "Passages where it stays silent:"
HITS = "(the label works):"
FPS = "(the label is too broad here):"
FNS = "(the label misses these):"


def passages(block: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", block, re.M)]


def words(block: list[str]) -> Counter:
    return Counter(w for p in block for w in set(re.findall(r"[a-z]{5,}", p.lower())) - STOP)


def is_rewrite(prompt: str) -> bool:
    return "Current label:" in prompt


def rewrite_parts(prompt: str) -> tuple[str, list[str], list[str], list[str]]:
    label = prompt.split("Current label: ", 1)[1].split("\n", 1)[0]
    hits = passages(prompt.split(HITS, 1)[1].split("Passages where the feature does NOT fire", 1)[0])
    fps = passages(prompt.split(FPS, 1)[1].split("Passages where the feature fires, yet", 1)[0])
    fns = passages(prompt.split(FNS, 1)[1].split("Write a better label", 1)[0])
    return label, hits, fps, fns


def judge_parts(prompt: str) -> tuple[str, str]:
    return prompt.split("<<<\n", 1)[1].split("\n>>>", 1)[0], prompt.split("Description: ", 1)[1].split("\n", 1)[0]


def judge(prompt: str) -> str:
    text, label = judge_parts(prompt)
    word = label.split()[-1].lower()
    return "Yes" if word in text.lower() else "No"


def rewriter(prompt: str) -> str:
    label, hits, fps, fns = rewrite_parts(prompt)
    good, bad = words(hits + fns), words(fps)
    old = label.split()[-1].lower()
    score = {w: good[w] - 2 * bad[w] for w in good if w != old}
    return f"mentions {max(score, key=lambda w: (score[w], w))}" if score else "mentions nothing"


def fake_llm(request) -> str:
    prompt = user_prompt(request)
    if "<<<" not in prompt and FIRES not in prompt and not is_rewrite(prompt):
        return "OK"  # the client's one-call check of the endpoint
    if is_rewrite(prompt):
        return rewriter(prompt)
    if FIRES in prompt:
        pos = passages(prompt.split(FIRES, 1)[1].split(SILENT, 1)[0])
        neg = passages(prompt.split(SILENT, 1)[1].split("\n\nName what", 1)[0])
        cp, cn = words(pos), words(neg)
        return "mentions " + max(cp, key=lambda w: (cp[w] / len(pos) - cn[w] / max(len(neg), 1), w))
    return judge(prompt)


@pytest.fixture(scope="module")
def yelp_sae(yelp_embedded):
    train, _, X, _ = yelp_embedded
    sae = SparseAutoencoder(m=32, k=4, max_epochs=20, seed=0).fit(X)
    return train["text"].tolist(), X, sae.transform(X)


def client_for(server, tmp_path, **kw) -> LLMClient:
    return LLMClient(
        model="fake-model",
        api_key="test",
        base_url=server.base_url,
        cache_path=tmp_path / "c.sqlite",
        backoff=0.01,
        **kw,
    )


def busiest(codes, n: int = 1) -> list[int]:
    return [int(j) for j in np.argsort(-np.diff(codes.tocsc().indptr))[:n]]


def part_of_text(texts, splits) -> dict[str, str]:
    out = {}
    for name in ("build", "validation", "test"):
        for r in splits.part(name):
            out[snippet(texts[r], 2000)[:80]] = name
            out[snippet(texts[r], 600)[:80]] = name
    return out


def test_a_planted_bad_label_is_rewritten_and_kept_only_when_validation_f1_rises(yelp_sae, openai_server, tmp_path):
    texts, _, codes = yelp_sae
    openai_server.responder = fake_llm
    splits = label_splits(len(texts), 0)
    (j,) = busiest(codes)
    refiner = Refiner(
        client_for(openai_server, tmp_path),
        texts,
        codes,
        splits,
        f1_bar=0.95,
        max_rounds=3,
        n_build=24,
        n_val=20,
        n_test=20,
    )
    res = refiner.refine({j: "mentions zzqxv"})[j]
    assert res.start_label == "mentions zzqxv" and res.val_start["f1"] == 0.0
    assert any(rd["kept"] for rd in res.rounds) and res.label != "mentions zzqxv"
    assert res.val["f1"] > res.val_start["f1"] and res.test is not None and res.test["n_scored"] > 0
    current = res.val_start["f1"]
    for rd in res.rounds:  # kept exactly when the validation F1 rose above the label in hand
        if rd.get("val_f1") is not None:
            assert rd["kept"] == (rd["val_f1"] > current), rd
        if rd["kept"]:
            current = rd["val_f1"]
    assert current == res.val["f1"]

    # a model that only ever suggests worse labels: every rewrite is scored and rejected, the label stays
    good = res.label
    openai_server.responder = lambda req: "mentions zzqxv" if is_rewrite(user_prompt(req)) else fake_llm(req)
    again = Refiner(
        client_for(openai_server, tmp_path / "b"),
        texts,
        codes,
        splits,
        f1_bar=1.0,
        max_rounds=2,
        n_build=24,
        n_val=20,
        n_test=20,
    ).refine({j: good})[j]
    assert again.label == good and [rd["kept"] for rd in again.rounds] == [False, False]
    assert {rd["reason"] for rd in again.rounds} == {"validation F1 did not rise"}
    assert all(rd["val_f1"] < again.val_start["f1"] for rd in again.rounds)


def test_a_rewrite_that_is_another_features_label_is_not_kept(yelp_sae, openai_server, tmp_path):
    texts, _, codes = yelp_sae
    held_by, planted = busiest(codes, 2)
    # the model rewrites every label into the one the other feature holds
    openai_server.responder = lambda req: "Mentions kitchen." if is_rewrite(user_prompt(req)) else fake_llm(req)
    refiner = Refiner(
        client_for(openai_server, tmp_path),
        texts,
        codes,
        label_splits(len(texts), 0),
        f1_bar=1.0,
        max_rounds=2,
        n_build=24,
        n_val=20,
        n_test=20,
    )
    out = refiner.refine({held_by: "mentions kitchen", planted: "mentions zzqxv"})
    assert out[held_by].label == "mentions kitchen"
    assert {rd["reason"] for rd in out[held_by].rounds} <= {"same label", "no errors on the build sample"}
    res = out[planted]
    assert res.label == "mentions zzqxv" and len(res.rounds) == 2
    assert [rd["reason"] for rd in res.rounds] == [f"feature {held_by}'s label"] * 2
    assert all(not rd["kept"] and "val" not in rd for rd in res.rounds)  # rejected before any judging


def test_no_example_used_to_choose_a_label_is_used_to_score_it(yelp_sae, openai_server, tmp_path):
    texts, _, codes = yelp_sae
    openai_server.responder = fake_llm
    splits = label_splits(len(texts), 0)
    part = part_of_text(texts, splits)
    latents = busiest(codes, 3)
    table = label_features(
        texts,
        codes,
        "llm",
        latents=latents,
        llm_client=client_for(openai_server, tmp_path),
        refine=True,
        f1_bar=0.95,
        max_rounds=2,
        n_candidates=2,
        n_examples=6,
        n_eval=16,
        n_test=20,
    )
    final = set(table.set_index("latent").loc[latents, "label"])
    seen = {"naming": set(), "rewrite": set(), "judged_test": set(), "judged_validation": set()}
    for req in openai_server.chat_requests():
        prompt = user_prompt(req)
        if FIRES in prompt:
            seen["naming"] |= {part[p[:80]] for p in passages(prompt)}
        elif is_rewrite(prompt):
            seen["rewrite"] |= {part[p[:80]] for p in passages(prompt)}
        else:
            text, label = judge_parts(prompt)
            where = part[text[:80]]
            if where == "test":
                assert label in final, f"a label that was not kept was judged on a test text: {label}"
            seen["judged_" + where] = seen.get("judged_" + where, set()) | {label}
    assert seen["naming"] == {"build"} and seen["rewrite"] <= {"build"}  # shown to the model: build texts only
    assert seen["judged_test"] == final  # every final label, and nothing else, was scored on test texts
    assert seen["judged_validation"] >= final
    scored = table.set_index("latent").loc[latents]
    assert scored["fidelity_f1"].notna().all() and scored["label_method"].str.startswith("llm:fake-model").all()


def test_the_budget_is_estimated_up_front_and_stops_the_loop(yelp_sae, openai_server, tmp_path):
    texts, _, codes = yelp_sae
    openai_server.responder = fake_llm
    splits = label_splits(len(texts), 0)
    a, b = busiest(codes, 2)
    # enough for one feature's start, one round and its test score (10 + 21 + 10), not for a second round
    budget = Budget(max_calls=45)
    refiner = Refiner(
        client_for(openai_server, tmp_path),
        texts,
        codes,
        splits,
        f1_bar=1.0,
        max_rounds=5,
        n_build=10,
        n_val=10,
        n_test=10,
        budget=budget,
    )
    est = refiner.estimate(2)
    assert est["calls"] == 2 * (10 + 5 * 21 + 10) and est["cost_usd"] > 0
    results = refiner.refine({a: "mentions zzqxv", b: "mentions zzqxv"})
    assert len(results[a].rounds) == 1 and results[a].stopped == "budget" and results[a].test is not None
    assert results[b].rounds == [] and results[b].stopped == "budget" and results[b].label == "mentions zzqxv"
    assert budget.calls == 41 <= budget.max_calls and budget.stopped
    assert len(openai_server.chat_requests()) <= 41
    assert "stopped" in budget.describe() and "$" in budget.describe()

    # a token cap stops it the same way; nothing is sent once a batch would not fit
    openai_server.requests.clear()
    tiny = Budget(max_tokens=500)
    res = Refiner(
        client_for(openai_server, tmp_path / "t"), texts, codes, splits, budget=tiny, n_val=10, n_test=10
    ).refine({a: "mentions zzqxv"})[a]
    assert res.stopped == "budget" and openai_server.chat_requests() == [] and tiny.calls == 0
    client = BudgetedClient(client_for(openai_server, tmp_path / "u"), Budget(max_calls=3))
    assert client.complete_many(["a", "b", "c", "d"]) == [None] * 4 and client.refused == 4
    assert openai_server.chat_requests() == []

    # whole LLM label sets: features the budget does not reach keep keyword labels, and say so
    per_feature = estimate_llm_labels(texts, 1, n_candidates=2, n_eval=10, n_test=10)["calls"]
    budget = Budget(max_calls=2 * per_feature + 5)
    five = busiest(codes, 5)
    table = label_features(
        texts,
        codes,
        "llm",
        latents=five,
        llm_client=client_for(openai_server, tmp_path / "s"),
        budget=budget,
        n_candidates=2,
        n_eval=10,
        n_test=10,
    )
    methods = table.set_index("latent").loc[five, "label_method"].tolist()
    n_llm = methods.count("llm:fake-model")
    assert 2 <= n_llm < 5 and methods == ["llm:fake-model"] * n_llm + ["keywords (LLM budget reached)"] * (5 - n_llm)
    assert budget.calls <= budget.max_calls and "name more features" in budget.stopped


def test_garbage_and_failed_answers_are_recorded_and_never_crash(yelp_sae, openai_server, tmp_path):
    texts, _, codes = yelp_sae
    splits = label_splits(len(texts), 0)
    (j,) = busiest(codes)
    rewrites = iter(["Sorry, I can't help with that.", "", "***", "mentions zzqxv"])

    def flaky(req):
        prompt = user_prompt(req)
        if is_rewrite(prompt):
            answer = next(rewrites)
            return (500, {"error": {"message": "down"}}, {}) if answer == "" else answer
        text, _ = judge_parts(prompt)
        return "it depends" if len(text) % 7 == 0 else judge(prompt)  # some judgements are unusable

    openai_server.responder = flaky
    refiner = Refiner(
        client_for(openai_server, tmp_path, max_retries=0),
        texts,
        codes,
        splits,
        f1_bar=1.0,
        max_rounds=4,
        n_build=24,
        n_val=20,
        n_test=20,
    )
    res = refiner.refine({j: "mentions zzqxv"})[j]
    reasons = [rd["reason"] for rd in res.rounds]
    assert reasons[:3] == ["unusable answer", "no answer (the call failed)", "unusable answer"]
    assert res.rounds[0]["answer"].startswith("Sorry") and res.label == "mentions zzqxv"
    assert [a["answer"] for a in refiner.answers][:3] == ["Sorry, I can't help with that.", None, "***"]
    assert res.test is not None and res.test["n_failed"] + res.test["n_scored"] == len(res.rows["test"])
    assert refiner.judge.failed > 0

    openai_server.responder = lambda req: (500, {"error": {"message": "down"}}, {})
    down = Refiner(client_for(openai_server, tmp_path / "d", max_retries=0), texts, codes, splits)
    res = down.refine({j: "mentions zzqxv"})[j]
    assert res.stopped == "the current label could not be scored" and res.rounds == []
    assert res.test["f1"] is None and res.test["n_failed"] == len(res.rows["test"])


def test_cli_prints_the_estimate_before_any_call_and_writes_an_llm_label_set(
    small_workspace, openai_server, tmp_path, monkeypatch, capsys
):
    from hsae_core.cli import main
    from hsae_core.workspace import Workspace

    ws_path = tmp_path / "ws"
    shutil.copytree(small_workspace, ws_path)
    openai_server.responder = fake_llm
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("HSAE_LLM_PRICE_IN", "1.0")
    assert main(["relabel", str(ws_path), "--labeller", "llm", "--refine", "--dry-run"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("LLM estimate for") and "$1.0/M input" in first and openai_server.requests == []
    assert main(["relabel", str(ws_path), "--labeller", "llm", "--refine", "--max-calls", "400"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("LLM estimate for") and "budget: calls 400" in out[0]
    assert any(line.startswith("spent ") and "stopped" in line for line in out)
    assert len(openai_server.chat_requests()) <= 400 + 1  # the budget, and the endpoint check before it
    ws = Workspace.open(ws_path)
    assert label_sets(ws)[0] == "llm"
    table = load_label_set(ws, "llm")
    assert table["label_method"].str.startswith("llm:").sum() >= 1
    assert table["label_method"].eq("keywords (LLM budget reached)").sum() >= 1
    # an endpoint that fails every call: one line, and no label set is written
    openai_server.responder = lambda req: (500, {"error": {"message": "down"}}, {})
    assert main(["relabel", str(ws_path), "--labeller", "llm", "--name", "broken", "--max-calls", "50"]) == 2
    assert "hsae: error:" in capsys.readouterr().err and "broken" not in label_sets(Workspace.open(ws_path))
    monkeypatch.setenv("HSAE_LLM_PRICE_IN", "cheap")
    assert main(["relabel", str(ws_path), "--labeller", "llm", "--dry-run"]) == 2
    assert "HSAE_LLM_PRICE_IN" in capsys.readouterr().err
