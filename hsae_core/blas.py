"""Few BLAS threads for the iterative fits of small models.

An iterative solver (L-BFGS in scikit-learn's logistic regression, Newton in statsmodels or in the conditional
logit) calls BLAS many times on small matrices with Python in between, and OpenBLAS wakes its threads for every
call. On this project's 2-core machine the wake-ups cost more than the work: the embeddings' logistic ceiling of
a yes/no run on 2,400 arXiv abstracts (7 strengths x 5 folds) took 6.4 s with two threads and 0.3 s with one,
with the same answer (``python bench/bench_blas_threads.py`` prints both side by side). Large one-off products
(the Gram matrix of a ridge) keep every thread: only the fits wrap themselves in :func:`fit_threads`.
"""

from __future__ import annotations

from contextlib import contextmanager

from . import settings


@contextmanager
def fit_threads():
    """Limit BLAS (OpenBLAS, MKL) to ``$HSAE_FIT_BLAS_THREADS`` threads (default 1; 0: no limit) inside the
    block, restored on leaving it. Usable as a decorator: ``@fit_threads()``."""
    threads = settings.fit_blas_threads()
    if threads == 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield
