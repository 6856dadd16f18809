# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""A run folder held by one process at a time: ``<folder>/.lock``, released when the process ends."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

_WINDOWS_LOCKED_BYTE = 1 << 20  # Windows locks are mandatory: lock a byte past the holder's id, which stays readable


def _try_lock(fd: int) -> bool:
    """Takes the exclusive lock of the open file ``fd`` without waiting; ``False`` when another holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, _WINDOWS_LOCKED_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


class RunLockedError(RuntimeError):
    """The run folder is held by another process (see :class:`RunLock`)."""


class RunLock:
    """``<folder>/.lock``: a run folder held by one process at a time.

    :meth:`acquire` (or ``with RunLock(folder):``) takes an exclusive lock on the file (``flock``;
    on Windows ``msvcrt.locking``) and writes this process's id and host into it, or raises
    :class:`RunLockedError` at once, naming the folder and the process that holds it. The lock is
    held until :meth:`release` (the end of the ``with`` block) or the end of the process, however it
    ends (exit, exception, crash, ``kill -9``): the operating system releases it, so a stopped run
    never leaves a stale lock behind. The file itself stays (removing it would let two processes
    lock two files of the same name); child processes started with ``subprocess`` or the ``spawn``
    start method do not inherit it.

    Args:
        folder (path): the run folder (created if missing).
        enabled (bool, optional): whether to take the lock. Defaults to ``True`` in the process of rank 0
            only (the ``RANK`` environment variable that torchrun sets, unset elsewhere): the other ranks
            of a distributed run leave the folder to rank 0.
        key (str): the config key that names the folder, for the error's fix. Defaults to ``"out_dir"``.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with RunLock(folder) as lock:
        ...     RunLock(folder).acquire()
        Traceback (most recent call last):
        ...
        aime_torchrl.trainers.lock.RunLockedError: ... is in use by another run (pid ... holds its .lock): wait for that run ...
        >>> lock.held, RunLock(folder).acquire().held  # released at the end of the block
        (False, True)
    """

    def __init__(self, folder: str | Path, *, enabled: bool | None = None, key: str = "out_dir") -> None:
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self.enabled = int(os.environ.get("RANK", 0)) == 0 if enabled is None else enabled
        self.key = key
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Takes the lock (nothing when disabled or already held), or raises :class:`RunLockedError`."""
        if not self.enabled or self.held:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.lseek(fd, 0, os.SEEK_SET)
            holder = os.read(fd, 256).decode(errors="replace").strip() or "a process that is starting"
            os.close(fd)
            raise RunLockedError(f"{self.folder} is in use by another run ({holder} holds its .lock): wait for that run "
                                 f"to end, or pass another {self.key}.")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Gives the lock back (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
