"""Everything the dashboard shows about SAE features, computed from sparse codes (CSR/CSC, never dense N x m).

- ``feature_stats``: density, mean and max activation of every latent (one vectorised pass).
- ``build_feature_table``: those statistics plus a label and keywords for each latent.
- ``reading_order``: the order the pages list features in: broad levels first, the busiest first within each.
- ``FeatureExplorer``: one feature's page: top and quantile documents, activation histogram,
  nearest features by decoder cosine, co-occurring features, prevalence across a metadata column,
  correlation of every latent with a column.
- ``column_correlations``: that correlation for a table's column (one value of a category, or beyond controls).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .csr_store import row_key
from .errors import DataError
from .progress import ProgressFn, report
from .target_scale import readable_scale


def feature_stats(codes: sp.spmatrix) -> pd.DataFrame:
    """Per latent: n_active, density (share of documents where it fires), mean activation when active, max."""
    codes = sp.csr_matrix(codes)
    n, m = codes.shape
    cols, vals = codes.indices, codes.data
    positive = vals > 0
    n_active = np.bincount(cols[positive], minlength=m)
    total = np.bincount(cols[positive], weights=vals[positive], minlength=m)
    # each column's largest positive value, by column segments (np.maximum.at is several times slower at scale)
    csc = codes.tocsc()
    col_vals = np.where(csc.data > 0, csc.data, 0)  # a stored value at or below 0 is no activation
    has_any = np.diff(csc.indptr) > 0
    max_act = np.zeros(m, dtype=np.float64)
    max_act[has_any] = np.maximum.reduceat(col_vals, csc.indptr[:-1][has_any])
    mean_act = np.divide(total, n_active, out=np.zeros(m), where=n_active > 0)
    return pd.DataFrame(
        {
            "latent": np.arange(m),
            "n_active": n_active.astype(np.int64),
            "density": n_active / max(n, 1),
            "mean_activation": mean_act,
            "max_activation": max_act,
        }
    )


def label_rows(codes: sp.spmatrix, top_docs: int, sample_docs: int, seed: int = 0) -> Optional[np.ndarray]:
    """Documents the keyword labeller reads on a large corpus: every latent's ``top_docs`` strongest documents
    plus a random ``sample_docs`` (the background the top documents are contrasted with). None = all documents."""
    n = codes.shape[0]
    if n <= 2 * sample_docs:
        return None
    csc = sp.csc_matrix(codes)
    picked = [np.random.default_rng(seed).choice(n, size=sample_docs, replace=False)]
    for j in range(csc.shape[1]):
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        if hi > lo:
            vals = csc.data[lo:hi]
            top = np.argpartition(-vals, top_docs - 1)[:top_docs] if hi - lo > top_docs else np.arange(hi - lo)
            picked.append(csc.indices[lo:hi][top[vals[top] > 0]])
    return np.unique(np.concatenate(picked))


def build_feature_table(
    texts: Sequence[str],
    codes: sp.spmatrix,
    progress: Optional[ProgressFn] = None,
    labels: Optional[pd.DataFrame] = None,
) -> pd.DataFrame:
    """Statistics plus a label for every latent: from ``labels`` (a label set of :mod:`hsae_core.labelsets`,
    with its fidelity columns) or, without one, offline keyword labels of every firing latent."""
    stats = feature_stats(codes)
    if labels is not None:
        from .labelsets import COLUMNS

        by_latent = labels.set_index("latent")
        for i, col in enumerate(COLUMNS[1:4]):
            stats.insert(1 + i, col, by_latent[col].reindex(stats["latent"]).to_numpy())
        for col in COLUMNS[4:]:
            stats[col] = by_latent[col].reindex(stats["latent"]).to_numpy()
        return stats
    alive = stats.loc[stats["n_active"] > 0, "latent"].to_numpy()
    labels_ = {int(i): f"feature {i} (never fires)" for i in stats["latent"]}
    keywords = {int(i): "" for i in stats["latent"]}
    method = "none"
    if len(alive):
        report(progress, 0, 1, f"labelling {len(alive)} features with keywords")
        from .interpret import KeywordInterpreter

        for item in KeywordInterpreter().interpret(
            list(texts), sp.csr_matrix(codes), [int(i) for i in alive], progress=progress
        ):
            labels_[int(item.latent)] = item.label
            keywords[int(item.latent)] = ", ".join(map(str, item.keywords or []))
            method = f"{item.method} (offline, contrastive log-odds)"
        report(progress, 1, 1, "labelled")
    stats.insert(1, "label", [labels_[int(i)] for i in stats["latent"]])
    stats.insert(2, "keywords", [keywords[int(i)] for i in stats["latent"]])
    stats.insert(3, "label_method", method)
    return stats


def reading_order(table: pd.DataFrame, level_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Latent ids in the order a reader meets them: an SAE's broadest level first (fewest latents: 2/1, then
    3/1, ..., 16/2, 64/24, 128/16; ``level_names`` as ``SparseAutoencoder.level_names``, None for one level)
    and, within a level, the feature that fires on most documents first."""
    latents = table["latent"].to_numpy(dtype=np.int64)
    busy = table["n_active"].to_numpy(dtype=np.float64)
    if level_names is None:
        size = active = np.zeros(len(latents))
    else:
        names = np.asarray(level_names, dtype=str)[latents]
        size = np.array([int(name.split("/")[0]) for name in names])
        active = np.array([int(name.split("/")[1]) for name in names])
    return latents[np.lexsort((latents, -busy, active, size))]


def search_features(table: pd.DataFrame, query: str, limit: int = 50) -> pd.DataFrame:
    """Features whose label or keywords contain every word of ``query`` (case-insensitive), densest first."""
    words = [w for w in str(query).lower().split() if w]
    if not words:
        return table.head(0)
    hay = (table["label"].astype(str) + " " + table["keywords"].astype(str)).str.lower()
    mask = np.ones(len(table), dtype=bool)
    for w in words:
        mask &= hay.str.contains(w, regex=False).to_numpy()
    return table[mask].sort_values("density", ascending=False).head(limit)


def example_query(table: pd.DataFrame) -> Optional[str]:
    """An example search for this corpus: the best-scored phrase label of a feature firing on 1-20% of the
    documents (specific, not rare). None when no feature has a phrase label with a fidelity score."""
    if "fidelity_auc" not in table or "label_method" not in table:
        return None
    phrases = table[
        table["label_method"].astype(str).str.startswith("phrase")
        & ~table["label"].astype(str).str.startswith("mentions ")
        & table["density"].between(0.01, 0.2)
        & table["fidelity_auc"].notna()
    ]
    if phrases.empty:
        return None
    return str(phrases.sort_values(["fidelity_auc", "latent"], ascending=[False, True])["label"].iloc[0])


def strongest_first(correlations) -> np.ndarray:
    """Positions ordered by the size of their correlation, strongest first of either sign; a feature with none
    (NaN: it never fires) last."""
    r = np.asarray(correlations, dtype=np.float64)
    return np.argsort(-np.where(np.isnan(r), -1.0, np.abs(r)), kind="stable")


def numeric_target(values: pd.Series, positive=None) -> np.ndarray:
    """A column as numbers for correlation: numeric as is (a missing value as NaN, which correlations skip),
    bool as 0/1, a category as one-vs-rest 0/1."""
    if positive is not None:
        return (values.astype(str) == str(positive)).to_numpy(dtype=np.float64)
    if values.dtype == bool:
        return values.to_numpy(dtype=np.float64)
    num = _numbers(values)
    if num is not None:
        return num.to_numpy(dtype=np.float64)
    common = values.dropna().astype(str).value_counts()
    shown = ", ".join(common.index[:8]) + (f" and {len(common) - 8:,} more" if len(common) > 8 else "")
    raise DataError(f"Column '{values.name}' is not numeric; pick one of its values (`value`): {shown}")


def _numbers(values: pd.Series) -> Optional[pd.Series]:
    """The column as numbers (missing values NaN) when every value it has is a number, not a bool or a date;
    else None."""
    if values.dtype == bool or pd.api.types.is_datetime64_any_dtype(values):
        return None
    num = pd.to_numeric(values, errors="coerce")
    return num if num.notna().any() and (num.notna() | values.isna()).all() else None


def correlation_column(values: pd.Series, positive=None) -> tuple[str, np.ndarray]:
    """(title, numbers) to correlate every feature with: one value of a category as 0/1, a number as it is,
    or as log(1 + y) when it is a heavy-tailed count (the rule hypotheses use, ``target_scale``)."""
    y = numeric_target(values, positive)
    if positive is not None:
        return f"corr({values.name}={positive})", y
    if values.dtype == bool:
        return f"corr({values.name})", y
    name, y = readable_scale(y, values.name)
    return f"corr({name})", y


class FeatureExplorer:
    """Answers every question of a feature page from the workspace's sparse codes."""

    def __init__(self, codes: sp.spmatrix, decoder_directions: np.ndarray):
        self.csr = codes if sp.issparse(codes) and codes.format == "csr" else sp.csr_matrix(codes)
        self._csc: Optional[sp.csc_matrix] = None
        self.n, self.m = self.csr.shape
        W = np.asarray(decoder_directions, dtype=np.float32)
        self.W = W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)
        positive = self.csr.data > 0
        self.density = np.bincount(self.csr.indices[positive], minlength=self.m) / max(self.n, 1)

    @property
    def csc(self) -> sp.csc_matrix:
        """Column-major codes, built on first use: one feature's documents are then O(nnz of that column)."""
        if self._csc is None:
            self._csc = self.csr.tocsc()
        return self._csc

    def _check(self, latent: int) -> int:
        latent = int(latent)
        if not 0 <= latent < self.m:
            raise DataError(f"Feature {latent} does not exist (this SAE has {self.m} features, 0..{self.m - 1})")
        return latent

    def activations(self, latent: int) -> tuple[np.ndarray, np.ndarray]:
        """(document ids, activations) where the feature fires."""
        latent = self._check(latent)
        lo, hi = self.csc.indptr[latent], self.csc.indptr[latent + 1]
        docs, vals = self.csc.indices[lo:hi], self.csc.data[lo:hi]
        keep = vals > 0
        return docs[keep].astype(np.int64), vals[keep]

    def top_documents(self, latent: int, n: int = 10) -> pd.DataFrame:
        """The ``n`` documents where the feature fires most, each once: documents with identical codes (the same
        text twice in the corpus) are one row, the first of them, and ``copies`` counts them."""
        docs, vals = self.activations(latent)
        shown: dict[tuple, int] = {}  # a document's codes -> its row below
        rows: list[list] = []
        for i in np.argsort(-vals, kind="stable"):
            if len(rows) >= n and (not rows or vals[i] < rows[-1][1]):
                break  # past the last shown activation: no more copies of a shown document
            key = row_key(self.csr, int(docs[i]))
            if key in shown:
                rows[shown[key]][2] += 1
            elif len(rows) < n:
                shown[key] = len(rows)
                rows.append([int(docs[i]), vals[i], 1])
        return pd.DataFrame(rows or None, columns=["doc", "activation", "copies"]).astype(
            {"doc": np.int64, "activation": vals.dtype, "copies": np.int64}
        )

    def quantile_samples(
        self, latent: int, n_bins: int = 4, per_bin: int = 3, seed: int = 0, exclude: Sequence[int] = ()
    ) -> pd.DataFrame:
        """A few documents drawn from each activation quantile band (``n_bins`` bands, the strongest first), each
        text once: no two with identical codes (the same text twice in the corpus), and none with the codes of a
        document in ``exclude`` (those the page already shows, e.g. ``top_documents``)."""
        docs, vals = self.activations(latent)
        if len(docs) == 0:
            return pd.DataFrame({"doc": [], "activation": [], "band": []})
        edges = np.quantile(vals, np.linspace(0, 1, n_bins + 1))
        rng = np.random.default_rng(seed)
        seen = {row_key(self.csr, int(d)) for d in exclude}
        rows = []
        for b in range(n_bins - 1, -1, -1):
            lo, hi = edges[b], edges[b + 1]
            in_band = np.flatnonzero((vals >= lo) & ((vals < hi) if b < n_bins - 1 else (vals <= hi)))
            picked = []
            for i in rng.permutation(in_band):  # a random draw that skips texts already shown
                key = row_key(self.csr, int(docs[i]))
                if key not in seen:
                    seen.add(key)
                    picked.append(i)
                    if len(picked) == per_bin:
                        break
            band = f"q{int(100 * b / n_bins)}-{int(100 * (b + 1) / n_bins)}"
            rows.extend((int(docs[i]), float(vals[i]), band) for i in sorted(picked, key=lambda i: -vals[i]))
        return pd.DataFrame(rows, columns=["doc", "activation", "band"])

    def histogram(self, latent: int, bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """(counts, bin edges) of the feature's positive activations."""
        _, vals = self.activations(latent)
        if len(vals) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.histogram(vals, bins=bins)

    def nearest(self, latent: int, n: int = 10) -> pd.DataFrame:
        """Features whose decoder directions are closest (cosine) to this one."""
        latent = self._check(latent)
        cos = self.W @ self.W[latent]
        cos[latent] = -np.inf
        n = min(n, self.m - 1)
        top = np.argpartition(-cos, n)[:n] if n < self.m - 1 else np.arange(self.m)[np.arange(self.m) != latent]
        top = top[np.argsort(-cos[top], kind="stable")]
        return pd.DataFrame({"latent": top, "cosine": cos[top]})

    def cooccurring(self, latent: int, n: int = 10) -> pd.DataFrame:
        """Features that fire most often in the same documents; lift = P(other | this) / P(other)."""
        docs, _ = self.activations(latent)
        if len(docs) == 0:
            return pd.DataFrame({"latent": [], "together": [], "share": [], "lift": []})
        rows = self.csr[docs]
        counts = np.bincount(rows.indices[rows.data > 0], minlength=self.m)
        counts[latent] = 0
        top = np.argsort(-counts, kind="stable")[:n]
        top = top[counts[top] > 0]
        share = counts[top] / len(docs)
        lift = np.divide(share, self.density[top], out=np.zeros(len(top)), where=self.density[top] > 0)
        return pd.DataFrame({"latent": top, "together": counts[top], "share": share, "lift": lift})

    def prevalence_by(self, latent: int, values: pd.Series, max_groups: int = 12) -> pd.DataFrame:
        """Share of documents where the feature fires, per value of a metadata column (numeric columns binned)."""
        if len(values) != self.n:
            raise DataError(f"Column has {len(values)} values but there are {self.n} documents")
        groups = _group_values(values.reset_index(drop=True), max_groups)
        docs, vals = self.activations(latent)
        active = np.zeros(self.n, dtype=bool)
        active[docs] = True
        act = np.zeros(self.n)
        act[docs] = vals
        frame = pd.DataFrame({"group": groups, "active": active, "activation": act})
        out = frame.groupby("group", observed=True, sort=True).agg(
            n_docs=("active", "size"), active_share=("active", "mean"), mean_activation=("activation", "mean")
        )
        return out.reset_index()

    def correlations(self, y: np.ndarray, controls=None) -> np.ndarray:
        """(m,) Pearson correlation of every latent's activation with y, over the rows where y is known; with
        ``controls`` (a :class:`~hsae_core.controls.ControlDesign` of every row), the partial correlation
        beyond them."""
        from .controls import partial_correlations
        from .select import correlation_scores

        y = self._numbers(y)
        known = np.isfinite(y)
        if known.sum() < 3:
            raise DataError(f"Only {int(known.sum())} documents have a value to correlate with")
        rows = None if known.all() else np.flatnonzero(known)
        codes = self.csr if rows is None else self.csr[rows]
        if controls is None:
            return correlation_scores(codes, y if rows is None else y[known])
        return partial_correlations(codes, y[known], controls if rows is None else controls.rows(rows))

    def _numbers(self, y) -> np.ndarray:
        """``y`` as one float per document; text, or another length, refused in one line."""
        try:
            values = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            text = pd.Series(np.asarray(y, dtype=object).ravel(), name=getattr(y, "name", None))
            raise DataError(_holds_text(text)) from None
        if values.shape != (self.n,):
            raise DataError(f"y has shape {values.shape} but there are {self.n} documents: give one number for each")
        return values

    def page(self, latent: int, column: Optional[pd.Series] = None) -> dict:
        """All of a feature page's data in one call (what the dashboard computes when a feature is opened)."""
        top = self.top_documents(latent)
        out = {
            "top": top,
            "quantiles": self.quantile_samples(latent, exclude=top["doc"].tolist()),
            "histogram": self.histogram(latent),
            "nearest": self.nearest(latent),
            "cooccurring": self.cooccurring(latent),
        }
        if column is not None:
            out["prevalence"] = self.prevalence_by(latent, column)
        return out


def column_correlations(
    explorer: FeatureExplorer, frame: pd.DataFrame, column: str, value=None, controls=(), text_col=None
) -> tuple[str, np.ndarray]:
    """(title, one number per feature): every feature's correlation with ``column`` of ``frame`` (the rows of
    ``explorer``'s codes), with one ``value`` of it as 0/1 for a category or a column of codes, and partial
    beyond the ``controls`` columns when some are given (read as a run reads them, :mod:`controls`)."""
    from .controls import fit_controls
    from .data import holds_codes, require_columns

    require_columns(frame, column)
    if column == text_col:
        raise DataError(f"`{column}` is the text column; correlate with a number or a category")
    values = frame[column]
    if value is None and holds_codes(values) and values.dtype != bool:
        shown = ", ".join(sorted(values.dropna().astype(str).unique())[:8])
        raise DataError(f"Column `{column}` holds codes ({shown}); pick one of its values (`value`)")
    if value is not None and not (values.astype(str) == str(value)).any():
        raise DataError(f"Column `{column}` never equals {value!r}")
    name, y = correlation_column(values, value)
    design = None
    if controls:
        read = fit_controls(frame, list(controls), text_col=text_col, target_col=column)
        design, name = read.design(frame), f"{name} | {', '.join(controls)}"
    return name, explorer.correlations(y, controls=design)


def _holds_text(values: pd.Series) -> str:
    """What to do with a category given where numbers are needed, naming its most common value."""
    name = values.name
    common = values.dropna().astype(str).value_counts().index[:3].tolist()
    first = common[0] if common else "a value"
    subject, head = ("y", "y") if name is None else (f"frame[{name!r}]", f"Column {name!r}")
    hint = "" if name is None else f" or column_correlations(explorer, frame, {name!r}, value={first!r})"
    return (
        f"{head} holds text ({', '.join(common)}, ...), not numbers: correlate one of its values as 0/1, "
        f"e.g. correlations({subject} == {first!r}){hint}"
    )


def _group_values(values: pd.Series, max_groups: int) -> pd.Series:
    """Groups for a prevalence chart: quantile bins of a number with many values (in order, documents with no
    value as "(missing)"), else the values themselves, the rarest merged into "(other)"."""
    num = _numbers(values)  # dates and bools group by their own values
    numeric = num is not None
    if numeric and num.nunique() > max_groups:
        bins = pd.qcut(num, q=min(max_groups, 10), duplicates="drop")
        bins = bins.cat.rename_categories([str(c) for c in bins.cat.categories])  # text labels, order kept
        if num.isna().any():
            bins = bins.cat.add_categories("(missing)").fillna("(missing)")
        return bins
    if numeric and (num.dropna() % 1 == 0).all():
        values = num.astype("Int64")  # whole numbers read as 1, not 1.0 (a missing value makes a column float)
    groups = values.astype(str).where(values.notna(), "(missing)")
    top = groups.value_counts().index[: max_groups - 1]
    if groups.nunique() > max_groups:
        groups = groups.where(groups.isin(top), "(other)")
    return groups


def text_features(sae, vector: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
    """Active features of one embedded text: latent, activation, label, strongest first."""
    z = sae.transform(np.asarray(vector, dtype=np.float32).reshape(1, -1))
    ids, vals = z.indices, z.data
    order = np.argsort(-vals, kind="stable")
    ids, vals = ids[order], vals[order]
    labels = table.set_index("latent").loc[ids, "label"].to_numpy() if len(ids) else []
    return pd.DataFrame({"latent": ids.astype(np.int64), "activation": vals, "label": labels})
