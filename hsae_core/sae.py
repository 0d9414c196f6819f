"""Top-k sparse autoencoder over text embeddings, small enough to read in one sitting.

Model:   z = TopK(W_enc (x - b_pre) + b_lat),   x_hat = W_dec^T z + b_pre
- ``TopK`` keeps the k largest pre-activations per row (ReLU'd); with ``batch_topk`` it keeps the
  k*B largest across a training batch and, at inference, everything above a threshold learned
  during training.
- Rows of ``W_dec`` (one direction per latent) have unit norm; their gradient is projected so
  Adam does not fight the renormalisation.
- Matryoshka: with prefixes (m1 < m2 < ...), each prefix of the code must reconstruct x alone
  (``matryoshka="auto"``: 4, 16, 64, ... below m).
- Levels: with ``levels`` (pairs of latents/active, e.g. 4/1 and 16/2), the latents after the main m are
  further top-k dictionaries of their own, each trained to reconstruct x alone; the code has k active latents
  from the main dictionary plus each level's own, and each level has its own pre-bias (as a separate SAE
  would). The SAE's reconstruction is its main dictionary's (the finest); the levels are coarser views of
  the same input.
- Aux-k: latents that have not fired for ``dead_after`` examples are asked to explain the
  residual, which revives them.
- ``b_pre`` starts at the geometric median of the data.

``SparseAutoencoder`` wraps it as a scikit-learn-style estimator: ``fit`` / ``transform`` (scipy CSR,
at most k non-zeros per row, never a dense N x M matrix) / ``save`` / ``load`` (a folder with
``config.json`` + ``model.safetensors``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from sklearn.base import BaseEstimator, TransformerMixin
from torch import nn

from . import settings, validate
from .device import resolve_device
from .errors import ModelError, StorageError, first_line
from .fsutil import check_output_dir, describe_os_error, replace_folder
from .progress import ProgressFn, report
from .sae_config import (  # the folder's schema; CONFIG_NAME, WEIGHTS_NAME, ... are imported from here too
    ARCHITECTURE,
    CONFIG_KEYS,
    CONFIG_NAME,
    FITTED_ROWS_NAME,
    SAE_FILES,
    TRAINING_FIELDS,
    WEIGHTS_NAME,
    SAEConfig,
    config_of,
    read_config,
    validate_sae_config,
)

# Early stopping: an epoch counts as progress only if the validation error drops by this share of its best
# value; after PATIENCE epochs without progress training stops (and the best weights are restored).
MIN_DELTA = 1e-3
PATIENCE = 5
# Rows seen in all, across epochs: big corpora need fewer passes (1M rows: 4 epochs; 4,000 rows: the cap).
MAX_SAMPLES = 4_000_000


class TopKSAE(nn.Module):
    """The model itself: parameters and the encode/decode maths."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.empty(cfg.m, cfg.d_in))
        self.W_dec = nn.Parameter(torch.empty(cfg.m, cfg.d_in))
        self.b_pre = nn.Parameter(torch.zeros(cfg.d_in))  # the main level's pre-bias
        self.b_lat = nn.Parameter(torch.zeros(cfg.m))
        if cfg.levels:  # every further level centres the input on a pre-bias of its own
            self.b_levels = nn.Parameter(torch.zeros(len(cfg.levels) - 1, cfg.d_in))
            level_of = torch.cat([torch.full((size,), g) for g, (_, size, _) in enumerate(cfg.groups)])
            self.register_buffer("level_of", level_of, persistent=False)
        # Inference threshold for batch-top-k; NaN until trained.
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self._folded_bias: Optional[tuple] = None  # (weights' identity and versions, b_lat - W_enc b_level)

    def init_weights(self, generator: torch.Generator, median: Optional[torch.Tensor] = None) -> None:
        with torch.no_grad():
            self.W_dec.copy_(torch.randn(self.W_dec.shape, generator=generator))
            self.normalize_decoder()
            self.W_enc.copy_(self.W_dec)
            self.b_lat.zero_()
            if median is not None:
                self.b_pre.copy_(median)
                if self.cfg.levels:
                    self.b_levels.copy_(median.expand_as(self.b_levels))

    def level_bias(self, level: int) -> torch.Tensor:
        """The pre-bias of one level (0: the main one)."""
        return self.b_pre if level == 0 else self.b_levels[level - 1]

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    def project_decoder_grad(self) -> None:
        """Remove the part of each decoder row's gradient that would only change its norm."""
        if self.W_dec.grad is not None:
            w, g = self.W_dec.data, self.W_dec.grad
            g.sub_((g * w).sum(dim=1, keepdim=True) * w)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.levels:  # W_enc (x - b_level) + b_lat, each latent centred by its own level's pre-bias
            return F.linear(x, self.W_enc, self._level_folded_bias())
        return F.linear(x - self.b_pre, self.W_enc, self.b_lat)

    def _level_folded_bias(self) -> torch.Tensor:
        """b_lat - W_enc b_level for every latent, b_level its own level's pre-bias. Outside autograd it is kept
        until a weight changes: forming it on every call was most of one query's encoding (a search at 1M took
        about 2 ms longer; BENCHMARKS.md). Any in-place change (an optimiser step, load_state_dict) bumps a weight's version."""

        def fold() -> torch.Tensor:
            biases = torch.cat([self.b_pre[None], self.b_levels])[self.level_of]
            return self.b_lat - (self.W_enc * biases).sum(1)

        if torch.is_grad_enabled():
            return fold()
        weights = (self.W_enc, self.b_lat, self.b_pre, self.b_levels)
        key = tuple((w.device, w.data_ptr(), w._version) for w in weights)
        if self._folded_bias is None or self._folded_bias[0] != key:
            self._folded_bias = (key, fold())
        return self._folded_bias[1]

    def sparse_code(self, pre: torch.Tensor, batch_mode: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Select active latents. Returns flat (indices, values, offsets) in embedding_bag form."""
        n, k = pre.shape[0], self.cfg.k
        if self.cfg.batch_topk and (batch_mode or not torch.isfinite(self.threshold)):
            flat_vals, flat_pos = pre.flatten().topk(min(k * n, pre.numel()), sorted=False)
            rows, cols = flat_pos // self.cfg.m, flat_pos % self.cfg.m
            return _rows_to_bag(rows, cols, F.relu(flat_vals), n)
        if self.cfg.batch_topk:
            rows, cols = torch.nonzero(pre > self.threshold, as_tuple=True)
            return _rows_to_bag(rows, cols, pre[rows, cols], n)
        if self.cfg.levels:  # each level keeps its own top-k among its own latents
            parts = [
                pre[:, start : start + size].topk(active, dim=1, sorted=False)
                for start, size, active in self.cfg.groups
            ]
            vals = torch.cat([v for v, _ in parts], dim=1)
            idx = torch.cat([i + start for (_, i), (start, _, _) in zip(parts, self.cfg.groups)], dim=1)
        else:
            vals, idx = pre.topk(k, dim=1, sorted=False)
        offsets = torch.arange(n, device=pre.device) * k
        return idx.flatten(), F.relu(vals).flatten(), offsets

    def decode_bag(
        self,
        idx,
        vals,
        offsets,
        limit: Optional[int] = None,
        with_bias: bool = True,
        level: Optional[int] = None,
        only_level: bool = False,
    ) -> torch.Tensor:
        """Reconstruct from a sparse code; ``limit`` keeps only latents below that index (Matryoshka);
        ``level`` reconstructs from that level's latents alone, with its pre-bias (``only_level``: the code
        holds that level's latents only, so nothing needs masking). An SAE with levels reconstructs from its
        main level (level 0) unless told otherwise."""
        if limit is not None:
            vals = vals * (idx < limit)
        if level is None and self.cfg.levels:
            level = 0
        if level is not None and not only_level:
            start, size, _ = self.cfg.groups[level]
            vals = vals * ((idx >= start) & (idx < start + size))
        out = F.embedding_bag(idx, self.W_dec, offsets, mode="sum", per_sample_weights=vals)
        if not with_bias:
            return out
        return out + (self.b_pre if level is None else self.level_bias(level))

    def level_reconstructions(self, idx, vals, n: int) -> list[torch.Tensor]:
        """Each level's own reconstruction of the n rows of a per-row code (``sparse_code`` of an SAE with levels,
        whose rows hold each level's k latents side by side): one small bag per level, nothing masked."""
        idx, vals = idx.view(n, self.cfg.k), vals.view(n, self.cfg.k)
        out, col = [], 0
        for level, (_, _, active) in enumerate(self.cfg.groups):
            offsets = torch.arange(n, device=idx.device) * active
            level_idx, level_vals = idx[:, col : col + active].reshape(-1), vals[:, col : col + active].reshape(-1)
            out.append(self.decode_bag(level_idx, level_vals, offsets, level=level, only_level=True))
            col += active
        return out

    def forward(self, x: torch.Tensor, batch_mode: bool = False):
        pre = self.pre_activations(x)
        idx, vals, offsets = self.sparse_code(pre, batch_mode)
        return self.decode_bag(idx, vals, offsets), (idx, vals, offsets), pre


def _rows_to_bag(rows, cols, vals, n):
    order = torch.argsort(rows, stable=True)
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = torch.bincount(rows, minlength=n)
    offsets = torch.cumsum(counts, 0) - counts
    return cols, vals, offsets


def _csr_rows(idx, vals, offsets, n: int, cfg: SAEConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch's code in CSR form on the host: (column indices, values, non-zeros per row), columns sorted
    within each row and zero activations dropped. The sorting happens where the code is (the GPU, there):
    a top-k code has the same width on every row, so each row sorts its own few columns; a batch-top-k code
    sorts by (row, column) once."""
    if not cfg.batch_topk:
        cols, order = idx.view(n, -1).sort(dim=1)
        values = vals.view(n, -1).gather(1, order)
        cols, values = cols.cpu().numpy(), values.cpu().numpy()
        keep = values > 0
        return cols[keep], values[keep], keep.sum(axis=1)
    rows = torch.repeat_interleave(
        torch.arange(n, device=idx.device), torch.diff(offsets, append=offsets.new_tensor([len(idx)]))
    )
    order = torch.argsort(rows * cfg.m + idx)
    rows, cols, values = rows[order].cpu().numpy(), idx[order].cpu().numpy(), vals[order].cpu().numpy()
    keep = values > 0
    return cols[keep], values[keep], np.bincount(rows[keep], minlength=n)


@contextmanager
def _threads_for_work(flops_per_step: int, single_thread_below: int = 50_000_000):
    """Small models train faster on one thread: for tiny matmuls, thread hand-offs cost more than they
    save (measured: m=128 on 384-d, batch 256 ran 3x faster on 1 thread than on 2)."""
    before = torch.get_num_threads()
    if flops_per_step < single_thread_below:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _stage_on(device: str, X: torch.Tensor, share: float = 0.5) -> torch.Tensor:
    """The training set itself on a GPU when it takes under ``share`` of the free memory (no copy per batch);
    otherwise it stays in host memory and each batch is copied over."""
    if device == "cpu":
        return X
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return X.to(device) if X.numel() * X.element_size() < share * free else X


def epoch_budget(n_train: int, max_epochs: int, max_samples: int = MAX_SAMPLES, min_epochs: int = 2) -> int:
    """Epochs to train on ``n_train`` rows: at most ``max_epochs`` and, beyond ``min_epochs``, no more passes
    than ``max_samples`` rows in all."""
    by_samples = max(min_epochs, math.ceil(max_samples / max(int(n_train), 1)))
    return max(1, min(int(max_epochs), by_samples))


def _prefixes(spec, m: int) -> tuple:
    try:
        return settings.matryoshka_prefixes(spec, m)
    except (TypeError, ValueError) as exc:
        raise ModelError(str(exc)) from None


def geometric_median(x: torch.Tensor, iters: int = 50, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm; a robust centre for the pre-bias."""
    median = x.median(dim=0).values
    for _ in range(iters):
        dist = (x - median).norm(dim=1).clamp_min(eps)
        weights = 1.0 / dist
        new = (weights[:, None] * x).sum(0) / weights.sum()
        if (new - median).norm() < eps:
            return new
        median = new
    return median


def _host_tensor(rows: np.ndarray) -> torch.Tensor:
    """A CPU tensor of ``rows``; a read-only array (a workspace's memory-mapped embeddings) is copied first,
    since torch warns on every process's first tensor made from one."""
    return torch.from_numpy(rows if rows.flags.writeable else rows.copy())


def as_float_matrix(X, d_in: Optional[int] = None, what: str = "embeddings") -> np.ndarray:
    """Validate an (N, d) array of finite floats; check the width against ``d_in`` if given. A scipy sparse
    matrix is made dense when that fits in memory: an SAE reads every dimension of every row."""
    if sp.issparse(X):
        X = _densified(X, what)
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{what} must be a 2-D array of numbers: {first_line(exc)}") from None
    if X.ndim != 2:
        raise ModelError(f"{what} must be a 2-D array (rows x dimensions), got shape {X.shape}")
    if d_in is not None and X.shape[1] != d_in:
        raise ModelError(f"{what} have width {X.shape[1]} but this SAE expects {d_in}")
    # A NaN or infinity makes the sum non-finite, and float32 values cannot overflow a float64 sum; the sum
    # needs no N x d temporary, where isfinite(X) held one (366 MiB at 1M x 384) on every fit and transform.
    with np.errstate(invalid="ignore"):  # inf + -inf is NaN, which is what this asks; numpy need not warn
        total = X.sum(dtype=np.float64)
    if not np.isfinite(total):
        raise ModelError(f"{what} contain NaN or infinite values")
    return X


def _densified(X: sp.spmatrix, what: str) -> np.ndarray:
    """The dense float32 array of a sparse matrix, refused in one line when it would take over half the memory."""
    need, have = 4 * X.shape[0] * X.shape[-1], validate.available_memory()
    if have is not None and need > 0.5 * have:
        raise ModelError(
            f"{what} are a sparse {X.shape[0]:,} x {X.shape[-1]:,} matrix that needs {need / 2**30:,.1f} GiB as "
            f"the dense array an SAE reads ({have / 2**30:,.1f} GiB available): reduce its rows or columns first"
        )
    return X.astype(np.float32).toarray()


class SparseAutoencoder(TransformerMixin, BaseEstimator):
    """A scikit-learn estimator (``clone``, ``get_params``, usable in a ``Pipeline``): parameters in
    ``__init__`` stored unchanged, learned state with a trailing underscore. Defaults: :data:`settings.SAE`,
    except ``levels``: the estimator alone is one top-k dictionary unless given levels (the product's entry
    points, hypotheses, workspaces and the CLI, pass ``settings.SAE.levels``)."""

    def __init__(
        self,
        m: int = settings.SAE.m,
        k: int = settings.SAE.k,
        *,
        batch_topk: bool = settings.SAE.batch_topk,
        matryoshka: Sequence[int] | str = settings.SAE.matryoshka,
        levels: Sequence | str = (),
        aux_k: int = 0,
        aux_coef: float = 1.0 / 32,
        dead_after: int = 5_000,
        lr: float = settings.SAE.lr,
        batch_size: int = settings.SAE.batch_size,
        max_epochs: int = settings.SAE.max_epochs,
        patience: int = PATIENCE,
        min_delta: float = MIN_DELTA,
        max_samples: Optional[int] = MAX_SAMPLES,
        val_frac: float = 0.1,
        seed: int = settings.SAE.seed,
        embedding_model: Optional[str] = None,
        device: str = settings.DEVICE,
    ):
        self.m, self.k = m, k
        self.batch_topk, self.matryoshka = batch_topk, matryoshka
        self.levels = levels  # further (latents, active) dictionaries beside the main (m, k); "none" or ()
        self.aux_k, self.aux_coef, self.dead_after = aux_k, aux_coef, dead_after
        self.lr, self.batch_size, self.max_epochs, self.patience = lr, batch_size, max_epochs, patience
        self.min_delta, self.max_samples = min_delta, max_samples
        self.val_frac, self.seed, self.embedding_model = val_frac, seed, embedding_model
        self.device = device  # 'auto' | 'cpu' | 'cuda': where training and encoding run; weights are saved on CPU

    # ------------------------------------------------------------------ training
    def fit(self, X, y=None, progress: Optional[ProgressFn] = None) -> SparseAutoencoder:
        """Train on the rows of ``X`` (``y`` is ignored; it is there for scikit-learn pipelines)."""
        self._validate_params()
        X = as_float_matrix(X)
        device = resolve_device(self.device)
        m_total = self.m + sum(s for s, _ in validate.levels(self.levels, ModelError))
        if device == "cpu":  # on a GPU, torch reports an allocation that does not fit
            validate.check_fits_memory(m_total, X.shape[1], self.batch_size, error=ModelError)
        with _threads_for_work(min(self.batch_size, len(X)) * m_total * X.shape[1]):
            self._fit(X, progress, device)
        self.fitted_rows_ = np.unique(row_digests(X))  # what it was fitted on, for fitted_on()
        return self

    def _validate_params(self) -> None:
        """Refuse out-of-range parameters before any work (scikit-learn style: checked at fit, not in __init__)."""
        v = validate
        m = v.positive_int("m", self.m, 1, ModelError)
        k = v.positive_int("k", self.k, 1, ModelError)
        if k > m:
            raise ModelError(f"`k` ({k}) cannot exceed `m` ({m})")
        if not isinstance(self.batch_topk, (bool, np.bool_)):
            raise ModelError(f"`batch_topk` must be True or False, got {self.batch_topk!r}")
        for p in _prefixes(self.matryoshka, m):
            v.positive_int("matryoshka", p, 1, ModelError)
        if validate.levels(self.levels, ModelError) and (_prefixes(self.matryoshka, m) or self.batch_topk):
            raise ModelError("`levels` cannot be combined with Matryoshka prefixes or batch-top-k")
        for name in ("batch_size", "max_epochs", "patience", "dead_after"):
            v.positive_int(name, getattr(self, name), 1, ModelError)
        v.positive_int("aux_k", self.aux_k, 0, ModelError)
        v.finite_float("lr", self.lr, 0.0, low_open=True, error=ModelError)
        v.finite_float("aux_coef", self.aux_coef, 0.0, error=ModelError)
        v.finite_float("val_frac", self.val_frac, 0.0, 1.0, high_open=True, error=ModelError)
        v.finite_float("min_delta", self.min_delta, 0.0, 1.0, high_open=True, error=ModelError)
        if self.max_samples is not None:
            v.positive_int("max_samples", self.max_samples, 1, ModelError)
        v.seed("seed", self.seed, ModelError)

    def _fit(self, X: np.ndarray, progress: Optional[ProgressFn], device: str) -> SparseAutoencoder:
        n, d = X.shape
        if n < 2:
            raise ModelError(f"Need at least 2 rows to train an SAE, got {n}")
        extra = validate.levels(self.levels, ModelError)
        levels = ((self.m, self.k),) + extra if extra else ()
        cfg = SAEConfig(
            d_in=d,
            m=self.m + sum(s for s, _ in extra),
            k=self.k + sum(a for _, a in extra),
            batch_topk=self.batch_topk,
            matryoshka=_prefixes(self.matryoshka, self.m),
            aux_k=self.aux_k,
            aux_coef=self.aux_coef,
            dead_after=self.dead_after,
            embedding_model=self.embedding_model,
            levels=levels,
        )
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        order = torch.randperm(n, generator=gen).numpy()
        n_val = int(round(n * self.val_frac)) if n >= 20 else 0
        val_rows, train_rows = order[:n_val], order[n_val:]
        X_train = torch.from_numpy(X[np.sort(train_rows)])
        X_val = torch.from_numpy(X[np.sort(val_rows)]) if n_val else None

        model = TopKSAE(cfg)
        sample = X_train[torch.randperm(len(X_train), generator=gen)[:5000]]
        model.init_weights(gen, geometric_median(sample))
        # Normalise losses by the data's variance so they read as "fraction of variance unexplained".
        # E||x - mean||^2 without an N x d temporary.
        scale = max(float((X_train.norm(dim=1) ** 2).mean() - (X_train.mean(0) ** 2).sum()), 1e-12)
        # Initialised on the CPU (same weights for a seed on any device), then moved.
        model.to(device)
        X_src = _stage_on(device, X_train)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        since_fired = torch.zeros(cfg.m, device=device)
        prefixes = list(cfg.matryoshka) + [cfg.m]
        batch = min(self.batch_size, len(X_train))
        history, best, best_loss, reference, bad_epochs = [], None, math.inf, math.inf, 0
        epochs = (
            self.max_epochs
            if self.max_samples is None
            else epoch_budget(len(X_train), self.max_epochs, self.max_samples)
        )
        t0 = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(X_train), generator=gen)
            # Summed where the losses are: a GPU step then reads nothing back but the dead-latent counts.
            sums = torch.zeros(2, dtype=torch.float64, device=device)
            for start in range(0, len(X_train) - batch + 1, batch):
                x = X_src[perm[start : start + batch].to(X_src.device)].to(device, non_blocking=True)
                recon_loss, aux_loss, idx, vals = self._step_losses(model, x, prefixes, since_fired, scale)
                loss = recon_loss + cfg.aux_coef * aux_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                model.project_decoder_grad()
                opt.step()
                model.normalize_decoder()
                self._track_firing(model, since_fired, idx, vals, len(x))
                sums += torch.stack([recon_loss.detach(), aux_loss.detach()]).double()
            steps = max(1, len(X_train) // batch)
            recon_sum, aux_sum = sums.tolist()
            record = {
                "epoch": epoch + 1,
                "train_nmse": recon_sum / steps,
                "aux_loss": aux_sum / steps,
                "dead_frac": float((since_fired >= cfg.dead_after).float().mean()),
            }
            monitor = record["train_nmse"]
            if X_val is not None:
                record["val_nmse"] = monitor = _nmse(model, X_val)
                if cfg.levels:  # stop on the training objective: every level reconstructing alone
                    monitor = float(np.mean(_level_nmse(model, X_val)))
            history.append(record)
            report(progress, epoch + 1, epochs, f"epoch {epoch + 1}: nmse {monitor:.4f}")
            if monitor < best_loss:  # the weights to restore: the best seen, however small the gain
                best_loss, best = monitor, copy.deepcopy(model.state_dict())
            if monitor < reference * (1.0 - self.min_delta):  # clear progress since the last clear progress
                reference, bad_epochs = monitor, 0
            else:
                bad_epochs += 1
                if bad_epochs >= self.patience:
                    break
        model.load_state_dict(best)
        model.eval()
        if cfg.batch_topk:
            _calibrate_threshold(model, X_train, batch)
        report(progress, epochs, epochs, "done")
        self.model_, self.config_, self.history_ = model, cfg, history
        self.best_epoch_ = int(np.argmin([h.get("val_nmse", h["train_nmse"]) for h in history]) + 1)
        # One pass per split gives both the error and which latents fire (no extra transform).
        train_nmse, fired = _nmse_and_firing(model, X_train)
        val_nmse = None
        if X_val is not None:
            val_nmse, fired_val = _nmse_and_firing(model, X_val)
            fired |= fired_val
        self.metrics_ = {
            "train_nmse": train_nmse,
            "val_nmse": val_nmse,
            "dead_frac": float(1.0 - fired.float().mean()),
            "epochs": len(history),
            "epoch_budget": int(epochs),
            "best_epoch": self.best_epoch_,
            "train_seconds": round(time.perf_counter() - t0, 3),
            "n_train": int(len(X_train)),
            "n_val": int(n_val),
        }
        if cfg.levels:
            per_level = _level_nmse(model, X_val if X_val is not None else X_train)
            self.metrics_["level_nmse"] = {
                settings.level_name(s, a): round(e, 5) for (s, a), e in zip(cfg.levels, per_level)
            }
        return self

    def _step_losses(self, model: TopKSAE, x, prefixes, since_fired, scale):
        cfg = model.cfg
        pre = model.pre_activations(x)
        idx, vals, offsets = model.sparse_code(pre, batch_mode=True)
        dead = since_fired >= cfg.dead_after
        # How many latents of each level are dead, read back in one transfer (the step's only host sync)
        n_dead = torch.stack([dead[start : start + size].sum() for start, size, _ in cfg.groups]).tolist()
        if cfg.levels:  # every level reconstructs x alone; dead latents are revived within their level
            recon, aux = 0.0, torch.zeros((), device=x.device)
            groups = zip(cfg.groups, n_dead, model.level_reconstructions(idx, vals, len(x)))
            for (start, size, active), level_n_dead, x_hat in groups:
                recon = recon + ((x_hat - x) ** 2).sum(1).mean() / scale
                if level_n_dead:
                    aux_k = min(size, cfg.aux_k or 2 * active)
                    level_pre, level_dead = pre[:, start : start + size], dead[start : start + size]
                    aux = aux + self._aux_loss(
                        model, x, x_hat, level_pre, level_dead, level_n_dead, aux_k, scale, start
                    )
            n = len(cfg.groups)
            return recon / n, aux / n, idx, vals
        recon = 0.0
        for p in prefixes:
            x_hat = model.decode_bag(idx, vals, offsets, limit=None if p == cfg.m else p)
            recon = recon + ((x_hat - x) ** 2).sum(1).mean() / scale
        recon = recon / len(prefixes)
        aux = self._aux_loss(model, x, x_hat, pre, dead, n_dead[0], cfg.effective_aux_k, scale)
        return recon, aux, idx, vals

    @staticmethod
    def _aux_loss(
        model: TopKSAE, x, x_hat, pre, dead, n_dead: int, aux_k: int, scale: float, first: Optional[int] = None
    ):
        """Aux-k: the ``aux_k`` strongest of the ``n_dead`` dead latents are asked to explain the residual
        ``x - x_hat``. With ``first``, ``pre`` and ``dead`` are one level's columns, whose first latent is
        ``first``."""
        if not n_dead:
            return torch.zeros((), device=x.device)
        residual = (x - x_hat).detach()
        aux_k = min(aux_k, n_dead)
        a_vals, a_idx = pre.masked_fill(~dead, -math.inf).topk(aux_k, dim=1, sorted=False)
        offsets_aux = torch.arange(len(x), device=x.device) * aux_k
        a_idx = a_idx.flatten() if first is None else a_idx.flatten() + first
        e_hat = model.decode_bag(a_idx, F.relu(a_vals).flatten(), offsets_aux, with_bias=False, only_level=True)
        return ((e_hat - residual) ** 2).sum(1).mean() / scale

    @staticmethod
    @torch.no_grad()
    def _track_firing(model: TopKSAE, since_fired, idx, vals, n_rows):
        # Counted with index_add and cleared with masked_fill: no boolean indexing, which reads back to the host
        fired = torch.zeros_like(since_fired).index_add_(0, idx, (vals > 0).to(since_fired.dtype))
        since_fired += n_rows
        since_fired.masked_fill_(fired > 0, 0)

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> TopKSAE:
        if not hasattr(self, "model_"):
            raise ModelError("This SAE is not trained yet: call fit() or load() first")
        return self.model_

    def fitted_on(self, X) -> Optional[np.ndarray]:
        """For each row of ``X``, whether this SAE was fitted on it (the same embedding, bit for bit, was among
        its training rows); None for an SAE that keeps no record of them (a pretrained checkpoint)."""
        fitted = getattr(self, "fitted_rows_", None)
        if fitted is None:
            return None
        return np.isin(row_digests(as_float_matrix(X, self.d_in, self._input_name())), fitted)

    @property
    def d_in(self) -> int:
        return self._check_fitted().cfg.d_in

    @property
    def n_features_in_(self) -> int:
        """The embedding width it reads, under scikit-learn's name for it (absent until trained, as there)."""
        if not hasattr(self, "model_"):
            raise AttributeError("n_features_in_: this SAE is not trained yet")
        return self.d_in

    @torch.no_grad()
    def transform(self, X, batch_size: int = 4096, progress: Optional[ProgressFn] = None) -> sp.csr_matrix:
        """Sparse codes (N x m CSR, float32) with at most k non-zeros per row (about k for batch-top-k)."""
        model = self._device_model()
        device = model.b_pre.device
        X = as_float_matrix(X, model.cfg.d_in, self._input_name())
        indptr, indices, data = [np.zeros(1, dtype=np.int64)], [], []
        for start in range(0, len(X), batch_size):
            x = _host_tensor(X[start : start + batch_size]).to(device)
            idx, vals, offsets = model.sparse_code(model.pre_activations(x), batch_mode=False)
            cols, values, counts = _csr_rows(idx, vals, offsets, len(x), model.cfg)
            indices.append(cols)
            data.append(values)
            indptr.append(indptr[-1][-1] + np.cumsum(counts))
            report(progress, min(start + batch_size, len(X)), len(X), "encoding")
        codes = sp.csr_matrix(
            (
                np.concatenate(data) if data else np.zeros(0, np.float32),
                np.concatenate(indices) if indices else np.zeros(0, np.int64),
                np.concatenate(indptr),
            ),
            shape=(len(X), model.cfg.m),
        )
        codes.has_canonical_format = True
        return codes

    def fit_transform(self, X, progress: Optional[ProgressFn] = None) -> sp.csr_matrix:
        return self.fit(X, progress=progress).transform(X)

    @torch.no_grad()
    def decode(self, codes) -> np.ndarray:
        """Dense reconstructions (N x d) from codes given as CSR or a dense (N x m) array."""
        model = self._check_fitted()
        W_dec, b_pre = model.W_dec.detach().cpu().clone(), model.b_pre.detach().cpu()
        if model.cfg.levels:  # the main level reconstructs; the other levels' latents do not enter
            W_dec[model.cfg.levels[0][0] :] = 0.0
        if sp.issparse(codes):
            codes = sp.csr_matrix(codes)
            dec = codes @ W_dec.numpy()
            return np.asarray(dec + b_pre.numpy(), dtype=np.float32)
        codes = torch.as_tensor(np.asarray(codes, dtype=np.float32))
        return (codes @ W_dec + b_pre).numpy()

    def reconstruct(self, X) -> np.ndarray:
        return self.decode(self.transform(X))

    def score(self, X) -> float:
        """Normalised MSE: squared error over the data's variance (0 is perfect, 1 is predicting the mean)."""
        X = as_float_matrix(X, self.d_in, self._input_name())
        return _nmse(self._device_model(), _host_tensor(X))

    @property
    def decoder_directions(self) -> np.ndarray:
        """(m, d) unit-norm direction of each latent in embedding space."""
        return self._check_fitted().W_dec.detach().cpu().numpy()

    @property
    def level_names(self) -> list[str]:
        """Each latent's level as 'latents/active' (e.g. '4/1'); every latent is in the one level of a plain SAE."""
        return self._check_fitted().cfg.level_names

    def _device_model(self) -> TopKSAE:
        """The fitted model, moved to ``device`` (a loaded SAE starts on the CPU)."""
        return self._check_fitted().to(resolve_device(self.device))

    def _input_name(self) -> str:
        em = self.model_.cfg.embedding_model
        return f"embeddings (this SAE was trained on {em})" if em else "embeddings"

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, extra: Optional[dict] = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into the folder ``path``, all at once: the files are
        written into a sibling folder that then replaces ``path``, so a failure leaves any previous SAE there
        whole. An existing folder is replaced only when it holds an SAE's files and nothing else."""
        model = self._check_fitted()
        _check_extra(extra)
        path = check_output_dir(path, "SAE folder", allow_nonempty=holds_only_an_sae)
        try:
            return replace_folder(path, lambda folder: self._write(folder, model, extra))
        except (OSError, SafetensorError) as exc:
            reason = describe_os_error(exc) if isinstance(exc, OSError) else first_line(exc)
            raise StorageError(
                f"Writing the SAE folder {path} failed: {reason}; any previous SAE there is unchanged"
            ) from None

    def _write(self, folder: Path, model: TopKSAE, extra: Optional[dict]) -> None:
        from safetensors.torch import save_file

        tensors = {
            "encoder.weight": model.W_enc.detach().cpu().contiguous(),
            "decoder.weight": model.W_dec.detach().T.cpu().contiguous(),
            "pre_bias": model.b_pre.detach().cpu().contiguous(),
            "latent_bias": model.b_lat.detach().cpu().contiguous(),
            "threshold": model.threshold.detach().reshape(1).cpu().contiguous(),
        }
        if model.cfg.levels:
            tensors["level_pre_bias"] = model.b_levels.detach().cpu().contiguous()
        save_file(tensors, str(folder / WEIGHTS_NAME))
        config = {"architecture": ARCHITECTURE, **asdict(model.cfg)}
        config["matryoshka"] = list(config["matryoshka"])
        config["levels"] = [list(pair) for pair in config["levels"]]
        config["training"] = {k: getattr(self, k) for k in TRAINING_FIELDS}
        config["metrics"] = getattr(self, "metrics_", {})
        if getattr(self, "source_", None):
            config["source"] = self.source_  # where a pretrained SAE came from (hub repo, file, revision)
        config.update(extra or {})
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=_json_default))
        if getattr(self, "fitted_rows_", None) is not None:
            np.save(folder / FITTED_ROWS_NAME, self.fitted_rows_, allow_pickle=False)

    @classmethod
    def load(cls, path: str | Path, device: str = settings.DEVICE) -> SparseAutoencoder:
        """Load a folder written by ``save`` (no pickle involved); ``device`` is where it will encode."""
        from safetensors.torch import load_file

        path = Path(path).expanduser()  # as save() writes it
        config = read_config(path)
        w_path = path / WEIGHTS_NAME
        try:
            tensors = load_file(str(w_path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"Corrupt SAE weights {w_path}: {str(exc).splitlines()[0]}") from None
        sae = cls.from_tensors(config, tensors, source=str(path))
        sae.device = device
        sae.metrics_ = config.get("metrics") or {}
        if config.get("source"):
            sae.source_ = config["source"]
        if (path / FITTED_ROWS_NAME).is_file():
            sae.fitted_rows_ = _read_fitted_rows(path / FITTED_ROWS_NAME)
        return sae

    @classmethod
    def from_tensors(cls, config: dict, tensors: dict, source: str = "checkpoint") -> SparseAutoencoder:
        """Build from a config dict and {name: tensor} in the saved layout, checking every shape."""
        cfg = config_of(validate_sae_config(config, source))
        expected = {
            "encoder.weight": (cfg.m, cfg.d_in),
            "decoder.weight": (cfg.d_in, cfg.m),
            "pre_bias": (cfg.d_in,),
            "latent_bias": (cfg.m,),
        }
        if cfg.levels:
            expected["level_pre_bias"] = (len(cfg.levels) - 1, cfg.d_in)
        for name, shape in expected.items():
            if name not in tensors:
                raise ModelError(f"{source}: weights are missing '{name}'")
            if tuple(tensors[name].shape) != shape:
                raise ModelError(f"{source}: '{name}' has shape {tuple(tensors[name].shape)}, expected {shape}")
        for name, t in tensors.items():
            if name in expected or name == "threshold":
                if not t.is_floating_point():
                    raise ModelError(f"{source}: '{name}' holds {t.dtype} values, not floating-point weights")
                if name != "threshold" and not bool(torch.isfinite(t).all()):
                    raise ModelError(f"{source}: '{name}' contains NaN or infinite weights; the SAE is damaged")
        model = TopKSAE(cfg)
        with torch.no_grad():
            model.W_enc.copy_(tensors["encoder.weight"].float())
            model.W_dec.copy_(tensors["decoder.weight"].float().T)
            model.b_pre.copy_(tensors["pre_bias"].float())
            model.b_lat.copy_(tensors["latent_bias"].float())
            if cfg.levels:
                model.b_levels.copy_(tensors["level_pre_bias"].float())
            if "threshold" in tensors:
                model.threshold.copy_(tensors["threshold"].float().reshape(()))
        model.eval()
        training = config.get("training", {})
        main_m, main_k = cfg.levels[0] if cfg.levels else (cfg.m, cfg.k)
        sae = cls(
            m=main_m,
            k=main_k,
            batch_topk=cfg.batch_topk,
            matryoshka=cfg.matryoshka,
            levels=cfg.levels[1:],
            aux_k=cfg.aux_k,
            aux_coef=cfg.aux_coef,
            dead_after=cfg.dead_after,
            embedding_model=cfg.embedding_model,
            **{k: v for k, v in training.items() if k in TRAINING_FIELDS},
        )
        sae.model_, sae.config_, sae.history_ = model, cfg, []
        sae.metrics_ = {}
        return sae


def row_digests(X: np.ndarray) -> np.ndarray:
    """A 64-bit digest (BLAKE2b) of each row's float32 bytes: equal rows get equal digests, and two different
    rows the same one with a chance of about 2**-64."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    digests = (int.from_bytes(hashlib.blake2b(row, digest_size=8).digest(), "little") for row in X)
    return np.fromiter(digests, dtype=np.uint64, count=len(X))


def _read_fitted_rows(path: Path) -> np.ndarray:
    try:
        digests = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ModelError(f"Corrupt SAE file {path}: {first_line(exc)}") from None
    if digests.dtype != np.uint64 or digests.ndim != 1:
        raise ModelError(f"Corrupt SAE file {path}: it holds {digests.dtype} values of shape {digests.shape}")
    return digests


def holds_only_an_sae(folder: Path) -> bool:
    """Whether ``save`` may replace this existing folder: it holds an SAE's files (and its model card) only."""
    names = {p.name for p in Path(folder).iterdir()}
    return names <= SAE_FILES


def _check_extra(extra: Optional[dict]) -> None:
    """Refuse ``extra`` keys that would overwrite the config's own (the folder would then not load)."""
    taken = sorted(set(extra or {}) & CONFIG_KEYS)
    if taken:
        raise ModelError(
            f"`extra` cannot set {', '.join(map(repr, taken))}: the SAE's config.json uses "
            f"{'that key' if len(taken) == 1 else 'those keys'}; give your entries other names"
        )


@torch.no_grad()
def _calibrate_threshold(model: TopKSAE, X: torch.Tensor, batch: int) -> None:
    """Batch-top-k inference threshold: the average cut-off value of batch-top-k over the training data,
    so that inference keeps about k latents per row without needing a batch."""
    cutoffs = []
    device = model.b_pre.device
    for start in range(0, len(X), batch):
        pre = model.pre_activations(X[start : start + batch].to(device))
        kept = pre.flatten().topk(min(model.cfg.k * len(pre), pre.numel())).values
        cutoffs.append(float(kept[-1].clamp_min(0.0)))
    model.threshold.fill_(float(np.mean(cutoffs)))


@torch.no_grad()
def _nmse_and_firing(model: TopKSAE, X: torch.Tensor, batch_size: int = 8192) -> tuple[float, torch.Tensor]:
    """Normalised MSE over X and a mask of the latents that fire on at least one row."""
    was_training = model.training
    model.eval()
    err, var = 0.0, 0.0
    device = model.b_pre.device
    mean = X.mean(0).to(device)
    fired = torch.zeros(model.cfg.m, dtype=torch.bool, device=device)
    for start in range(0, len(X), batch_size):
        x = X[start : start + batch_size].to(device)
        x_hat, (idx, vals, _), _ = model(x, batch_mode=False)
        err += float(((x_hat - x) ** 2).sum())
        var += float(((x - mean) ** 2).sum())  # in chunks: no full-size temporary
        fired[idx[vals > 0]] = True
    model.train(was_training)
    return err / max(var, 1e-12), fired


def _nmse(model: TopKSAE, X: torch.Tensor, batch_size: int = 8192) -> float:
    return _nmse_and_firing(model, X, batch_size)[0]


@torch.no_grad()
def _level_nmse(model: TopKSAE, X: torch.Tensor, batch_size: int = 8192) -> list[float]:
    """Normalised MSE of each level's own reconstruction over X (an SAE with levels)."""
    was_training = model.training
    model.eval()
    device = model.b_pre.device
    mean = X.mean(0).to(device)
    errs, var = np.zeros(len(model.cfg.groups)), 0.0
    for start in range(0, len(X), batch_size):
        x = X[start : start + batch_size].to(device)
        idx, vals, _ = model.sparse_code(model.pre_activations(x), batch_mode=False)
        for level, x_hat in enumerate(model.level_reconstructions(idx, vals, len(x))):
            errs[level] += float(((x_hat - x) ** 2).sum())
        var += float(((x - mean) ** 2).sum())
    model.train(was_training)
    return [float(e) / max(var, 1e-12) for e in errs]


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)
