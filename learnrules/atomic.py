"""Output folders written whole: a temporary folder beside ``--out``, moved into place when complete.

:func:`output_folder` is used around a whole command: it checks the destination and takes a lock before any
work, hands out the temporary folder to write into, and on success moves it to ``--out`` (replacing an
existing folder only with ``overwrite``). On any error or interruption the temporary folder is removed and an
existing ``--out`` is left as it was, so a folder never mixes the files of two runs. :func:`output_files` does
the same for a few files written side by side (``simulate``'s table, true weights and metadata).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["check_destination", "lock_path", "output_files", "output_folder"]

logger = logging.getLogger(__name__)

_BLOCKED = {signal.SIGINT, signal.SIGTERM}
_OUTPUT_MARKS = ("summary.json", "failures.csv")  # what every learnrules output folder holds, one or the other


def check_destination(out: str | os.PathLike, *, overwrite: bool) -> Path:
    """Refuse an ``--out`` that names a file, or an existing folder without ``overwrite``; return it as a Path.

    With ``overwrite``, a non-empty folder is replaced only if it holds a ``summary.json`` or a
    ``failures.csv`` (an output of learnrules) and does not hold the current folder: ``--out . --overwrite``
    must not delete your data.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is an existing file, not a folder; name a folder")
    if out.is_dir() and not overwrite:
        raise ValueError(f"--out {str(out)!r} already exists; pass --overwrite to replace it whole, or name a new "
                         "folder")
    if out.is_dir() and (Path.cwd().resolve() == out.resolve() or out.resolve() in Path.cwd().resolve().parents):
        raise ValueError(f"--out {str(out)!r} holds the current folder; --overwrite will not replace it")
    if out.is_dir() and any(out.iterdir()) and not any((out / name).is_file() for name in _OUTPUT_MARKS):
        raise ValueError(f"--out {str(out)!r} is not an output folder of learnrules (no summary.json); "
                         "--overwrite replaces only those, or empty folders")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"--out {str(out)!r}: {str(parent)!r} is a file, not a folder")
    return out


def lock_path(out: Path) -> Path:
    """Return the lock file of ``out``: a hidden file beside it (``.NAME.lock``)."""
    return out.parent / f".{out.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire(lock: Path, out: Path) -> None:
    """Create ``lock`` holding this process id; a lock left by a process that no longer runs is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder > 0 and holder != os.getpid() and _alive(holder):
                raise ValueError(f"--out {str(out)!r} is being written by another learnrules run (process {holder}, "
                                 f"lock {str(lock)!r}); wait for it or choose another folder") from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: its process ended without removing it
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        return
    raise ValueError(f"--out {str(out)!r}: could not take the lock {str(lock)!r}")


def _commit(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move ``tmp`` to ``out`` with SIGINT/SIGTERM held back, so that no interruption splits the two renames."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
    try:
        if out.exists():
            check_destination(out, overwrite=overwrite)
            os.rename(out, old)
            os.rename(tmp, out)
        else:
            os.rename(tmp, out)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def output_folder(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to write the outputs into; move it to ``out`` when the block completes.

    Parameters
    ----------
    out : str or os.PathLike
        The destination folder. Refused when it names a file, or exists and ``overwrite`` is False.
    overwrite : bool
        Replace an existing ``out`` whole (never merge into it).

    Raises
    ------
    ValueError
        For a refused destination, or when another process holds the lock of ``out``.
    """
    out = check_destination(out, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(out)
    _acquire(lock, out)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
        mask = os.umask(0)
        os.umask(mask)
        tmp.chmod(0o777 & ~mask)  # a folder as mkdir makes it (mkdtemp's is private)
        yield tmp
        _commit(tmp, out, overwrite)
        tmp = None
        logger.info("outputs moved into place at %s", out)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            lock.unlink()



@contextlib.contextmanager
def output_files(*paths: Path) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths`` to write; move each onto its path when the block completes.

    The moves happen in the order given with SIGINT/SIGTERM held back, so name the file that readers look for
    (the table) last: where it exists, the files before it are complete. On any error or interruption before
    the moves, the temporary files are removed and existing files are left as they were.
    """
    temps = [p.parent / f".{p.name}.tmp-{os.getpid()}" for p in paths]
    try:
        yield temps
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        try:
            for tmp, path in zip(temps, paths, strict=True):
                os.replace(tmp, path)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
