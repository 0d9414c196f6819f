"""An experiment, not a product path: choose hypotheses from the latents of several SAEs at once.

The product trains one SAE and chooses among its latents. Issue 9 asks whether a target should be able to
pick its granularity (a whole field needs a latent about as broad as the field; Yelp stars need many fine
ones). Here the main SAE (the config's ``m``, ``k``) is trained beside other sizes (``pool``: [m, k]
pairs, same seed and training settings), their codes are put side by side, and the product's own choice
(:func:`hsae_core.pipeline.choose_for`: the config's method, presence and overlap cap) picks ``n``
latents from all of them. Each hypothesis is still one latent of one SAE with its learned threshold; its
holdout annotation is that latent's presence, scored by the pipeline's statistics.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hsae_core.embed import DEFAULT_MODEL_ID
from hsae_core.pipeline import choose_for, hypotheses_to_test
from hsae_core.presence import presence
from hsae_core.sae import SparseAutoencoder
from hsae_core.sae_cache import fit_cached
from hsae_core.stats import evaluate_hypotheses


def product_embeddings(train, hold, text_col: str, target_col: str, config) -> tuple[np.ndarray, np.ndarray]:
    """The two splits embedded exactly as ``hypothesize`` embeds them (its text cleaning, its cache), so the
    main SAE here is the one the product trains: a 1e-7 difference in the input retrains it differently."""
    from hsae_core.pipeline import embed_split, load_split

    train_corpus, hold_corpus = load_split(train, text_col, target_col, holdout=hold, config=config)
    X_train, X_hold, _ = embed_split(train_corpus, hold_corpus)
    return X_train, X_hold


def pooled_codes(X_train, X_hold, config, pool) -> tuple[sp.csr_matrix, sp.csr_matrix, list[tuple[int, int]]]:
    """Training and holdout codes of the config's SAE and of each ``[m, k]`` in ``pool``, side by side."""
    sizes = [(config.m, config.k)] + [(int(m), int(k)) for m, k in pool]
    train_parts, hold_parts = [], []
    for i, (m, k) in enumerate(sizes):
        sae = SparseAutoencoder(
            m=m,
            k=k,
            batch_topk=config.batch_topk,
            matryoshka=config.matryoshka if i == 0 else (),
            max_epochs=config.max_epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=config.seed,
            embedding_model=DEFAULT_MODEL_ID,  # as the pipeline trains it: the main SAE is the product's own
            device=config.device,
        )
        sae = fit_cached(sae, X_train, use_cache=config.cache_sae)
        train_parts.append(sp.csr_matrix(sae.transform(X_train)))
        hold_parts.append(sp.csr_matrix(sae.transform(X_hold)))
    return sp.hstack(train_parts).tocsr(), sp.hstack(hold_parts).tocsr(), sizes


def pooled_hypotheses(codes_train, codes_hold, y_train, y_hold, kind: str, config) -> dict:
    """The product's choice on pooled codes, annotated on the holdout and scored there."""
    choice = choose_for(config, codes_train, y_train, kind, n=hypotheses_to_test(config, len(y_hold)))  # as the product
    annotations = presence(codes_hold, choice.latents, choice.thresholds)  # the activation annotator's rule
    _, overall = evaluate_hypotheses(annotations, y_hold, kind)
    return {
        "latents": choice.latents,
        "annotations": annotations,
        "positive": np.asarray(choice.scores) > 0,
        "metrics": overall,
    }


def source_of(latents, sizes) -> list[str]:
    """Which SAE each pooled latent id comes from, as 'm/k'."""
    ends = np.cumsum([m for m, _ in sizes])
    return [f"{sizes[i][0]}/{sizes[i][1]}" for i in np.searchsorted(ends, np.asarray(latents), side="right")]
