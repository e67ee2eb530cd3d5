"""Evaluating cases on a Dask cluster (``dask.distributed``; the ``calibviz[dask]`` extra).

One task is one case: :func:`calibviz.io.evaluate_case` runs on a worker, which reads the
case's files itself (paths travel, never arrays) and returns the case's
:class:`~calibviz.io.CaseResult` (a few KB). The client hands each result to ``on_result`` as
it finishes, exactly as the local pool does, so the progress bar, the partial-case store,
resume and the reports are the same code and write the same files.

Faults: a task whose worker dies is run again by the scheduler on another worker (it is lost
only after ``distributed.scheduler.allowed-failures`` deaths, then it becomes that case's error:
"the worker evaluating it died"); an exception raised on a worker is retried once, then
becomes that case's error; Ctrl-C cancels the tasks not yet finished (the finished cases are
already saved by the caller).

Dask is imported only here and only when a cluster is used.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from .io import Case, CaseResult, Problem, evaluate_case
from .options import EvalOptions

INSTALL_HINT = "pip install 'calibviz[dask]'"
#: A scheduler given as ``local:N`` starts a LocalCluster of N worker processes.
_LOCAL = re.compile(r"^local:(\d+)$")
#: Seconds to wait for a scheduler before giving up with a usage error.
CONNECT_TIMEOUT = "20s"
#: Dask settings of the LocalCluster started for ``local:N`` (its scheduler and workers):
#: no statistical profiler (every thread's stack sampled every 10 ms), the system monitor
#: every 2 s instead of 0.5 s and the event-loop watchdog every 0.2 s instead of 20 ms (on 2
#: cores, Dask's own CPU per 192x192x96 case goes from about 0.3 to 0.1 s; these only feed the
#: dashboard, which nobody opens here); and the workers keep glibc's adaptive allocator (Dask
#: sets ``MALLOC_TRIM_THRESHOLD_``, which makes every array over 128 KB fresh memory to fault
#: in: about a quarter more CPU per case here).
LOCAL_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.tick.interval": "200ms",
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}


def require_distributed() -> None:
    """Raise ``ImportError`` saying how to install the extra when dask.distributed is absent."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ImportError(f"--scheduler needs dask.distributed: {INSTALL_HINT}") from None


def check_scheduler(scheduler: str) -> None:
    """``ValueError`` unless ``scheduler`` is ``local:N`` (1 <= N <= 4 per core) or an address
    (``tcp://host:8786``, ``tls://…``, ``host:port``)."""
    match = _LOCAL.match(scheduler)
    if match and int(match.group(1)) >= 1:
        from .loop import check_processes

        check_processes(int(match.group(1)), f"--scheduler {scheduler}")
        return
    if not match and re.match(r"^([a-z]+://)?[^\s:/]+:\d+$", scheduler):
        return
    raise ValueError(f"--scheduler: expected a scheduler address such as tcp://host:8786 or "
                     f"local:N (N worker processes on this machine), got {scheduler!r}")


@contextmanager
def connect(scheduler: str) -> Iterator:
    """A ``distributed.Client`` for ``scheduler`` (``local:N`` starts a LocalCluster of N
    single-threaded worker processes with :data:`LOCAL_CONFIG`, closed again on exit, also
    after an error or Ctrl-C).
    Raises ``ImportError`` without dask.distributed, ``ValueError`` for a bad address or a
    scheduler that cannot be reached."""
    check_scheduler(scheduler)
    require_distributed()
    from distributed import Client, LocalCluster

    match = _LOCAL.match(scheduler)
    if match:
        import dask

        with dask.config.set(LOCAL_CONFIG):  # read by the workers' nannies as they start
            cluster = LocalCluster(n_workers=int(match.group(1)), threads_per_worker=1,
                                   processes=True, dashboard_address=":0")
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise ValueError(f"cannot connect to the Dask scheduler at {scheduler}: "
                         f"{type(error).__name__}: {error}") from None
    with client:
        yield client


def check_usage(scheduler: str, client, workers: int | None) -> None:
    """The usage checks of ``--scheduler`` (a :class:`calibviz.run.UsageError`), made
    before anything runs."""
    from .run import UsageError

    if client is not None or workers is not None:
        raise UsageError("--scheduler evaluates the cases on a Dask cluster; it cannot be "
                         "combined with " + ("a client" if client is not None else "--workers"))
    try:
        check_scheduler(scheduler)
        require_distributed()
    except (ValueError, ImportError) as error:
        raise UsageError(str(error)) from None


@contextmanager
def connected(scheduler: str) -> Iterator:
    """:func:`connect` for a run: a scheduler that cannot be reached is a usage error."""
    from .run import UsageError

    stack = ExitStack()
    try:
        client = stack.enter_context(connect(scheduler))
    except (ValueError, ImportError, OSError) as error:
        raise UsageError(str(error)) from None
    with stack:
        yield client


def n_threads(client) -> int:
    """The number of tasks the cluster runs at once (its workers' threads)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return sum(w.get("nthreads", 1) for w in workers.values()) or 1


def evaluate_on_cluster(
    cases: list[Case],
    options: EvalOptions,
    client,
    on_result: Callable[[CaseResult], None],
    *,
    function: Callable[[Case, EvalOptions], CaseResult] = evaluate_case,
    retries: int = 1,
) -> int:
    """Evaluate ``cases`` on the cluster of ``client``, calling ``on_result`` here as each
    one finishes (completion order). The first case runs alone (its result may show that
    the options do not fit the data, which stops the run before the rest are sent); then
    every other case is one task. Returns the number of worker threads used.
    """
    from distributed import as_completed

    if not cases:
        return n_threads(client)
    shares = _thread_shares(client)
    run = uuid.uuid4().hex[:8]

    def submit(case: Case):
        return client.submit(_evaluate_task, function, case, options, shares, pure=False,
                             retries=retries, key=f"calibviz-{run}-{case.case_id}")

    pending = {submit(cases[0]): cases[0]}
    try:
        first = next(iter(pending))
        on_result(_result_of(first, pending.pop(first)))
        pending = {submit(case): case for case in cases[1:]}
        for future in as_completed(list(pending)):
            on_result(_result_of(future, pending.pop(future)))
    except BaseException:  # Ctrl-C, or the first case stopped the run
        if pending:
            client.cancel(list(pending))
        raise
    return n_threads(client)


def _evaluate_task(function, case: Case, options: EvalOptions, shares: dict) -> CaseResult:
    """One case on a worker, its Numba kernels sharing the machine's cores with the other
    tasks running there (``shares``: worker address -> threads per task)."""
    import numba
    from distributed import get_worker

    try:
        threads = shares.get(get_worker().address) or _share_here()
    except ValueError:  # not on a worker (a client running tasks itself)
        threads = _share_here()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    return function(case, options)


def _share_here() -> int:
    from distributed import get_worker

    return max(1, _cores() // max(1, get_worker().state.nthreads))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)


def _prepare_worker() -> int:
    """On each worker before the first case: start loading the compiled kernel in a thread
    (the first cases' reading overlaps it); returns the machine's cores."""
    from .loop import warm_up

    warm_up()
    return _cores()


def _thread_shares(client) -> dict[str, int]:
    """Threads per task on each worker: its machine's cores over the tasks that machine's
    workers run at once (two single-threaded workers on 2 cores: one thread each). Each
    worker starts loading the compiled kernel meanwhile (:func:`_prepare_worker`)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    cores = client.run(_prepare_worker)
    per_host = Counter()
    for info in workers.values():
        per_host[info["host"]] += info.get("nthreads", 1)
    return {address: max(1, cores.get(address, 1) // max(1, per_host[info["host"]]))
            for address, info in workers.items()}


def _result_of(future, case: Case) -> CaseResult:
    """The case's result, or its error when the task failed on the cluster."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as error:
        message = (f"case {case.case_id}: the worker evaluating it died (KilledWorker: "
                   f"{error}); its files may be too large for the worker's memory limit, "
                   "or the worker was stopped")
    except Exception as error:  # raised on the worker: this case's error, the run goes on
        text = " ".join(str(error).split())
        message = (f"case {case.case_id}: evaluation failed on a Dask worker: "
                   f"{type(error).__name__}" + (f": {text}" if text else ""))
    return CaseResult(case.case_id, None, [Problem(case.case_id, case.prediction_name,
                                                   message)])
