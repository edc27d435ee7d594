"""Atomic writes: a temp file in the same folder, fsync, then rename (and the file helpers beside them).

A crash (even SIGKILL) leaves either the old file or the new one, never half a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the user's usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_open(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb", encoding=None) as fh:
        fh.write(data)


def temp_target(tmp: Path) -> str:
    """The file name a temp file from `atomic_path` was going to become (".name.RANDOM.tmp" -> "name")."""
    return tmp.name[1:].removesuffix(".tmp").rsplit(".", 1)[0]


def clean_temp_files(folder: Path, names: Iterable[str] | None = None) -> int:
    """Remove temp files a killed writer left behind; returns how many.

    With `names`, only the temps of those files: a folder shared by concurrent runs keeps the
    temps another run is writing right now.
    """
    wanted = None if names is None else set(names)
    removed = 0
    if folder.is_dir():
        for tmp in folder.rglob(".*.tmp"):
            if wanted is None or temp_target(tmp) in wanted:
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed


@contextmanager
def file_lock(path: Path, wait: bool = True) -> Iterator[None]:
    """An exclusive advisory lock on `path` (the kernel frees it if the holder dies).

    `wait=False` raises BlockingIOError at once when another process holds it. Windows has
    no advisory locks: there it does nothing, and one writer at a time is up to the user.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def file_digest(path: Path) -> str:
    """The first 12 hex digits of a file's SHA-256: names an artifact in keys and sidecars."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]
