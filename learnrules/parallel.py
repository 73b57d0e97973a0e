"""Independent fits in parallel: processes on this machine (joblib's loky backend) or a Dask cluster.

A :class:`ParallelConfig` says where the fits run: ``jobs`` worker processes here (``None``: one per core), or
the workers of a Dask distributed cluster whose scheduler listens at ``scheduler`` (joblib's Dask backend; needs
the ``dask`` extra, ``pip install 'learnrules[dask]'``). :func:`run_tasks` runs a list of :class:`Task` there
and returns their results in the tasks' order, whatever order they finish in. Each worker process runs one torch
thread (fits are many small banded solves: more threads per process compete for the same cores), the
caller's default dtype, so a task computes the same numbers in a worker as in the calling process, and the
caller's level of the ``learnrules`` logger. A task
that raises comes back as a :class:`TaskFailure` naming it; the other tasks run on. One progress bar counts
the finished tasks (several calls can share it).

Arguments are pickled to the workers (cloudpickle: closures are fine), for each task on local processes. On
Dask, an argument several tasks take (the same object: the fit function, one fold's data, a shared parametric
fit) is scattered to the cluster once and the tasks refer to it.
"""

from __future__ import annotations

import logging
import pickle
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["ParallelConfig", "Task", "TaskFailure", "progress_bar", "run_tasks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParallelConfig:
    """Where independent fits run.

    Parameters
    ----------
    jobs : int, optional
        Worker processes on this machine (None: one per core, ``joblib.cpu_count()``). With 1 (and no
        ``scheduler``) the tasks run one after another in the calling process.
    scheduler : str, optional
        Address of a Dask distributed scheduler, e.g. ``tcp://10.0.0.5:8786``: the tasks run on its workers
        (``jobs`` is then ignored).
    """

    jobs: int | None = 1
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.jobs is not None and self.jobs < 1:
            raise ValueError(f"jobs must be >= 1 (or None: one per core), got {self.jobs}")

    @property
    def n_jobs(self) -> int:
        """Worker processes on this machine (1 on a Dask cluster: the cluster decides)."""
        if self.scheduler is not None:
            return 1
        if self.jobs is None:
            import joblib

            return max(joblib.cpu_count(), 1)
        return self.jobs

    @property
    def in_process(self) -> bool:
        """Whether the tasks run one after another in the calling process."""
        return self.scheduler is None and self.n_jobs == 1


@dataclass(frozen=True)
class Task:
    """One independent piece of work: ``func(*args)``, named by ``label`` in logs and failures."""

    label: str
    func: Callable[..., Any]
    args: tuple = ()


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised: its label, the exception's type and message, the formatted traceback, the exception."""

    label: str
    error: str
    traceback: str
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.label}: {self.error}"

    def labelled(self) -> BaseException:
        """Return the task's exception, of its own type, with the label before its message (to re-raise)."""
        if self.exception is None:
            return RuntimeError(str(self))
        try:
            return type(self.exception)(f"{self.label}: {self.exception}")
        except Exception:  # an exception type that takes other arguments
            return self.exception


def progress_bar(total: int, *, progress: bool | None, desc: str = "fits") -> tqdm:
    """Return one bar over ``total`` tasks (``progress`` None: shown when stderr is a terminal)."""
    return tqdm(total=total, desc=desc, unit="fit", disable=None if progress is None else not progress)


def _call(index: int, label: str, func: Callable[..., Any], dtype: torch.dtype, worker: int | None, *args: Any
          ) -> tuple[int, Any]:
    """Run one task and return its index with its result, or a :class:`TaskFailure` if it raised.

    ``worker``: None in the calling process; in a worker process, the caller's level of the learnrules logger.
    """
    previous = torch.get_default_dtype()
    if worker is not None:  # only ever lowered: raising the count after MKL ran makes LAPACK hang (torch 2.13 CPU)
        torch.set_num_threads(1)
        if not logging.getLogger().handlers:  # a fresh process (loky): log to stderr as the command line does
            logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("learnrules").setLevel(worker)
    torch.set_default_dtype(dtype)
    try:
        return index, func(*args)
    except Exception as err:  # reported with the task's label; the other tasks carry on
        exception = err
        if worker is not None:
            try:  # it travels back to the caller only if it pickles
                pickle.dumps(err)
            except Exception:
                exception = None
        return index, TaskFailure(label, f"{type(err).__name__}: {err}", traceback.format_exc(), exception)
    finally:
        torch.set_default_dtype(previous)


def _shared(tasks: Sequence[Task]) -> list[Any]:
    """Return the arguments (by identity) that several tasks take: the data a Dask cluster receives once."""
    seen: dict[int, Any] = {}
    shared: dict[int, Any] = {}
    for task in tasks:
        for arg in (task.func, *task.args):
            if arg is None or isinstance(arg, (str, int, float, bool)):
                continue
            if id(arg) in seen:
                shared[id(arg)] = arg
            seen[id(arg)] = arg
    return list(shared.values())


@contextmanager
def _backend(config: ParallelConfig, shared: Sequence[Any]) -> Iterator[None]:
    import joblib

    if config.scheduler is None:
        with joblib.parallel_config(backend="loky", n_jobs=config.n_jobs, inner_max_num_threads=1):
            yield
        return
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask's distributed scheduler: pip install 'learnrules[dask]'") from None
    try:
        client = Client(config.scheduler, timeout=30)
    except OSError as err:
        raise ValueError(f"cannot reach the Dask scheduler at {config.scheduler!r}: {err}") from None
    try:
        with joblib.parallel_config(backend="dask", n_jobs=-1, scatter=list(shared) or None):
            yield
    finally:
        client.close()


def run_tasks(tasks: Sequence[Task], config: ParallelConfig, *, bar: tqdm | None = None) -> list[Any]:
    """Run ``tasks`` where ``config`` says; return their results (or :class:`TaskFailure`) in the tasks' order.

    Parameters
    ----------
    tasks : sequence of Task
        Independent tasks.
    config : ParallelConfig
        Processes here, or a Dask cluster.
    bar : tqdm, optional
        A progress bar advanced by one as each task finishes.

    Returns
    -------
    list
        ``tasks[i]``'s return value, or a :class:`TaskFailure`, at position ``i``.
    """
    dtype = torch.get_default_dtype()
    results: list[Any] = [None] * len(tasks)
    if config.in_process or not tasks:
        for i, t in enumerate(tasks):
            results[i] = _finished(_call(i, t.label, t.func, dtype, None, *t.args)[1], bar)
        return results
    import joblib

    level = logging.getLogger("learnrules").getEffectiveLevel()
    with _backend(config, _shared(tasks)):
        run = joblib.Parallel(return_as="generator_unordered")
        for i, result in run(joblib.delayed(_call)(i, t.label, t.func, dtype, level, *t.args)
                             for i, t in enumerate(tasks)):
            results[i] = _finished(result, bar)
    return results


def _finished(result: Any, bar: tqdm | None) -> Any:
    if isinstance(result, TaskFailure):
        logger.error("%s failed: %s", result.label, result.error)
    if bar is not None:
        bar.update(1)
    return result

