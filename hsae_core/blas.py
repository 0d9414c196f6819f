"""Few BLAS threads for the iterative fits of small models.

An iterative solver (L-BFGS in scikit-learn's logistic regression, Newton in statsmodels or in the conditional
logit) calls BLAS many times on small matrices with Python in between, and OpenBLAS wakes its threads for every
call. On this project's 2-core machine the wake-ups cost more than the work: the embeddings' logistic ceiling of
a yes/no run on 2,400 arXiv abstracts (7 strengths x 5 folds) took 6.4 s with two threads and 0.3 s with one,
with the same answer (``python bench/bench_blas_threads.py`` prints both side by side). Large one-off products
(the Gram matrix of a ridge) keep every thread: only the fits wrap themselves in :func:`fit_threads`.

BLAS's thread count belongs to the whole process, and the dashboard runs its sessions in threads. Two fits that
overlapped would each restore what they found on entering, and the later one could leave BLAS on one thread for
good; so fits take turns (a re-entrant lock: a fit may call another), and each sets and restores the count in
its own thread. (Once the main thread has set the count, threadpoolctl reads back the main thread's value in
other threads, but a limit set in a worker thread does speed up that thread's fits: a 7-strength logistic grid
took 0.02 s limited and 0.45 s not, in a worker as in the main thread, in a one-off check.)
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from . import settings

_turn = threading.RLock()


@contextmanager
def fit_threads():
    """Limit BLAS (OpenBLAS, MKL) to ``$HSAE_FIT_BLAS_THREADS`` threads (default 1; 0: no limit) inside the
    block, restored on leaving it; one thread's fits at a time. Usable as a decorator: ``@fit_threads()``."""
    threads = settings.fit_blas_threads()
    if threads == 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    with _turn, threadpool_limits(limits=threads, user_api="blas"):
        yield
