"""File-system errors a user can cause, turned into one line that names the path and says what to do.

Two places use it: the CLI boundary (``harness.cli.main``) turns an ``OSError`` that carries a file name
(read-only folder, missing permission, a file where a folder is expected, disk full) into
``error: <what> <path>: <what to do>``; and checkpoint writers call ``save_with_space_check``, because
torch reports a full disk while writing a zip archive as ``RuntimeError: [enforce fail at
inline_container.cc] ... unexpected pos`` (or ``file write failed``) without the errno.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError

# Below this much free space, a failed archive write is taken to be the disk filling up.
LOW_SPACE_BYTES = 64 * 1024 * 1024
# torch's zip writer failure messages (caffe2 inline_container.cc) when a write comes up short.
_TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


class DiskFullError(HarnessError):
    """No space left on the device holding ``path``: freeing space and rerunning fixes it."""


class FileSystemError(HarnessError):
    """A path the harness cannot create, write or read because of permissions or what is already there."""


def _advice(code: int | None) -> str:
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return "free some space (or choose another --out), then rerun the same command"
    if code in (errno.EACCES, errno.EPERM):
        return "no permission: choose a folder you can write to (e.g. another --out) or fix its permissions"
    if code == errno.EROFS:
        return "the file system is read-only: choose a writable folder (e.g. another --out)"
    if code == errno.ENOTDIR:
        return "a part of this path is a file, not a folder: choose another path or move that file away"
    if code == errno.EISDIR:
        return "this path is a folder where a file is expected: choose another path"
    if code == errno.EEXIST:
        return "something is already there: choose another path or remove it"
    if code == errno.ENOENT:
        return "no such file or folder: check the path"
    return "check the path and its permissions"


def describe_os_error(exc: OSError) -> str | None:
    """One line for an ``OSError`` about a named path, or ``None`` when it names no path (not the user's doing).

    Example: ``permission denied: /data/runs/base2new: no permission: choose a folder you can write to ...``.
    """
    path = exc.filename if exc.filename is not None else exc.filename2
    if path is None:
        return None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device: {path}: {_advice(exc.errno)}"
    reason = (exc.strerror or type(exc).__name__).lower()
    return f"{reason}: {path}: {_advice(exc.errno)}"


def user_fixable(exc: OSError) -> bool:
    """Whether retrying cannot help until the user acts: permissions, read-only, wrong kind of path, disk full."""
    fixed = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC, errno.EDQUOT)
    return exc.errno in fixed and describe_os_error(exc) is not None


def is_disk_full(exc: BaseException, path: Path) -> bool:
    """Whether ``exc`` from writing ``path`` means the disk is full (errno, or torch's short-write error)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, RuntimeError) and any(text in str(exc) for text in _TORCH_WRITE_FAILURES):
        return free_bytes(path) < LOW_SPACE_BYTES
    return False


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return LOW_SPACE_BYTES  # unknown: do not claim a full disk on a guess


def save_with_space_check(write: Callable[[Path], None], temporary: Path, target: Path) -> None:
    """``write(temporary)`` then rename it to ``target``; a full disk becomes ``DiskFullError``, no ``.tmp`` kept.

    Raises:
        DiskFullError: the disk filled up while writing (the temporary file is removed).
    """
    try:
        write(temporary)
        os.replace(temporary, target)
    except (OSError, RuntimeError) as exc:
        if not is_disk_full(exc, temporary):
            temporary.unlink(missing_ok=True)
            raise
        temporary.unlink(missing_ok=True)
        raise DiskFullError(f"no space left on device: {target}: {_advice(errno.ENOSPC)}") from None
