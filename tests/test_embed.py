"""Embedding cache: a second run embeds nothing, keys are exact, a killed write leaves no corrupt cache."""

import numpy as np
import pytest
from openai_server import openai_server  # noqa: F401  (fixture)

from hsae_core.embed import EmbeddingCache, OpenAIEmbedder, embed_texts, text_key
from hsae_core.errors import DataError


class CountingEmbedder:
    """Wraps the real offline embedder and counts what it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.model_id, self.calls = inner, inner.model_id, []
        self.cache_id = inner.cache_id

    @property
    def dim(self):
        return self.inner.dim

    def embed(self, texts, progress=None):
        self.calls.append(list(texts))
        return self.inner.embed(texts, progress=progress)


def test_second_run_embeds_nothing_and_returns_identical_vectors(yelp_frames, embedder, tmp_path):
    texts = yelp_frames[0]["text"].tolist()[:60]
    counting = CountingEmbedder(embedder)
    first = embed_texts(texts, counting, cache_dir=tmp_path, chunk_size=25)
    assert sum(len(c) for c in counting.calls) == 60 and len(counting.calls) == 3  # cached chunk by chunk
    # unit norm: to float32 rounding on a CPU, to half precision's on a GPU
    np.testing.assert_allclose(
        np.linalg.norm(first, axis=1), 1.0, atol=1e-4 if embedder.torch_device == "cpu" else 2e-3
    )
    counting.calls.clear()
    again = embed_texts(texts + texts[:5], counting, cache_dir=tmp_path)
    assert counting.calls == []
    np.testing.assert_array_equal(again[:60], first)
    np.testing.assert_array_equal(again[60:], first[:5])


def test_keys_ending_in_nul_bytes_are_found_again(tmp_path):
    # sha256 prefixes end in 0x00 for ~1 text in 256; they must round-trip through the shard files.
    keys = [bytes(15) + b"\x00", b"\x01" * 15 + b"\x00", b"\xff" * 16]
    vectors = np.eye(3, dtype=np.float32)
    EmbeddingCache(tmp_path, "m").add(keys, vectors)
    found, got = EmbeddingCache(tmp_path, "m").lookup(keys)
    assert found.all()
    np.testing.assert_array_equal(np.vstack(got), vectors)


def test_interrupted_write_leaves_a_usable_cache(yelp_frames, embedder, tmp_path):
    texts = yelp_frames[0]["text"].tolist()[:10]
    embed_texts(texts[:5], embedder, cache_dir=tmp_path)
    shard_dir = next(tmp_path.iterdir())
    # A run killed mid-write leaves only a temporary file behind, and a half-written shard is unreadable.
    (shard_dir / ".tmp-shard-dead.npz").write_bytes(b"PK\x03\x04 half written")
    (shard_dir / "shard-broken.npz").write_bytes(b"PK\x03\x04 truncated")
    counting = CountingEmbedder(embedder)
    out = embed_texts(texts, counting, cache_dir=tmp_path)
    assert sum(len(c) for c in counting.calls) == 5  # only the 5 new texts
    assert out.shape == (10, 384)


def test_models_do_not_share_cache_entries(tmp_path):
    EmbeddingCache(tmp_path, "model-a").add([text_key("hello")], np.ones((1, 4), dtype=np.float32))
    found, _ = EmbeddingCache(tmp_path, "model-b").lookup([text_key("hello")])
    assert not found.any()


def test_a_text_embeds_the_same_beside_texts_of_other_lengths(yelp_frames, embedder, tmp_path):
    # Padding a short text up to a long one's length moved its vector by ~1e-7, and an SAE trained on such
    # vectors can pick other latents: the same command printed another table after the cache was filled
    # in another order. Batches of one token count keep other texts' words and lengths out of a vector.
    # (How many texts of its own length share a batch can still move its last bit: the texts here each
    # have a token count of their own.)
    pool = yelp_frames[0]["text"].tolist()[:200] + ["Cold fries.", "Great tacos, friendly staff."]
    tokenize = getattr(embedder.model, "preprocess", None) or embedder.model.tokenize
    lengths = tokenize(pool)["attention_mask"].sum(dim=1).tolist()
    texts = list({length: text for text, length in zip(pool, lengths)}.values())[:40]
    together = embedder.embed(texts)
    for i in (0, 7, len(texts) - 2, len(texts) - 1):
        np.testing.assert_array_equal(embedder.embed([texts[i]])[0], together[i])
    np.testing.assert_array_equal(embedder.embed(texts[10:30]), together[10:30])
    # through the cache: filled by another grouping, it returns what a cold run computes
    embed_texts(texts[::-1][:25], embedder, cache_dir=tmp_path / "a", chunk_size=7)
    np.testing.assert_array_equal(embed_texts(texts, embedder, cache_dir=tmp_path / "a"), together)


def test_embedding_progress_counts_up_to_every_text(yelp_frames, embedder):
    texts = yelp_frames[0]["text"].tolist()[:70]
    seen = []
    embedder.embed(texts, progress=lambda done, total, message="": seen.append((done, total)))
    assert seen[-1] == (70, 70)
    assert all(total == 70 for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)  # never backwards


def test_a_bare_string_is_refused_not_embedded_letter_by_letter(embedder, tmp_path):
    # It returned an (18, 384) matrix: one vector per character of "The food was great".
    with pytest.raises(DataError, match=r"got one string: pass \[text\]"):
        embed_texts("The food was great", embedder, cache_dir=tmp_path)
    assert not (tmp_path / embedder.cache_id).exists()  # nothing embedded or cached


@pytest.mark.parametrize(
    "bad, shown",
    [
        (None, r"texts\[1\] is None"),
        (float("nan"), r"texts\[1\] is NaN \(a missing value\)"),
        (5, r"texts\[1\] is 5 \(type int\)"),
    ],
)
def test_a_missing_or_non_text_item_is_named_by_position_on_the_local_model(embedder, tmp_path, bad, shown):
    for use_cache in (True, False):
        with pytest.raises(DataError, match=shown + r": every text must be a string; drop or fill empty ones"):
            embed_texts(["good food", bad, "slow service"], embedder, cache_dir=tmp_path, use_cache=use_cache)


def test_a_missing_text_is_refused_before_an_openai_endpoint_is_called(openai_server, tmp_path):  # noqa: F811
    remote = OpenAIEmbedder("text-embedding-3-small", api_key="sk-test", base_url=openai_server.base_url)
    for use_cache in (True, False):
        with pytest.raises(DataError, match=r"texts\[2\] is None"):
            embed_texts(["good food", "slow", None], remote, cache_dir=tmp_path, use_cache=use_cache)
    assert openai_server.calls("POST", r".*/embeddings") == []
    assert embed_texts(["good food"], remote, cache_dir=tmp_path).shape == (1, openai_server.embed_dim)
