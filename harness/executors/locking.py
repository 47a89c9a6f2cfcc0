"""A run lease: a lock file that names who executes a run, works across hosts, and survives its holder dying.

The lease is ``<run folder>/.lease.json`` holding the owner (host, boot id, pid, process start time, a task
label such as a Ray task id) and a heartbeat timestamp that a daemon thread refreshes while the run executes.
It is created atomically (a hard link of a fully written temporary file, which fails if the lease exists,
and is atomic on NFS too; ``O_CREAT|O_EXCL`` where the filesystem has no hard links), so exactly one
contender wins.

A lease is stale, and may be taken over, when its owner is provably gone: on the same host, its process is
dead (or a zombie, or its pid was reused: the start time differs) or the host rebooted (boot id); on any
host, its heartbeat is older than ``stale_after_s``. That last rule compares wall clocks of two hosts, so
clusters need synchronised clocks (NTP) and a timeout far above the heartbeat interval.

Taking over is serialised by a second, short-lived guard file, so two contenders that both find the same
stale lease cannot both replace it. ``fcntl.flock`` (which the runner also uses) is not enough on its own
on a cluster: several shared filesystems ignore it or need a mount option.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from harness.errors import HarnessError

LEASE_NAME = ".lease.json"
GUARD_NAME = ".lease.takeover"
DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_STALE_AFTER_S = 120.0


@dataclass(frozen=True)
class LeaseOwner:
    """Who holds a lease, and when it last said it was alive (``heartbeat``, Unix time)."""

    token: str
    host: str
    boot_id: str | None
    pid: int
    pid_start: str | None
    task: str
    acquired: float
    heartbeat: float

    def describe(self) -> str:
        """``host pid N (task)`` for messages."""
        return f"{self.host} pid {self.pid}" + (f" ({self.task})" if self.task else "")


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """The (state, start time) of a process from ``/proc``, or None where ``/proc`` does not tell."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after the last ")" are plain.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], fields[19]


def current_owner(task: str = "", now: float | None = None) -> LeaseOwner:
    """A new owner record for this process (a fresh token for each lease taken)."""
    stamp = time.time() if now is None else now
    stat = _proc_stat(os.getpid())
    return LeaseOwner(uuid.uuid4().hex, socket.gethostname(), _boot_id(), os.getpid(),
                      stat[1] if stat else None, task, stamp, stamp)


def process_is_gone(pid: int, pid_start: str | None) -> bool:
    """Whether process ``pid`` of this host has exited (dead, zombie, or its pid now names another process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists and belongs to another user
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, start = stat
    # A killed worker stays a zombie until its parent reaps it; it holds no files and does no work.
    return state in ("Z", "X") or (pid_start is not None and start != pid_start)


def stale_reason(owner: LeaseOwner, stale_after_s: float = DEFAULT_STALE_AFTER_S,
                 now: float | None = None) -> str | None:
    """Why the lease of ``owner`` is stale, or None while its owner may still be working."""
    if owner.host == socket.gethostname():
        if owner.boot_id and _boot_id() and owner.boot_id != _boot_id():
            return f"{owner.describe()} held it before {owner.host} rebooted"
        if process_is_gone(owner.pid, owner.pid_start):
            return f"{owner.describe()} is gone"
    age = (time.time() if now is None else now) - owner.heartbeat
    if age > stale_after_s:
        return f"{owner.describe()} sent no heartbeat for {age:.0f}s (limit {stale_after_s:.0f}s)"
    return None


def read_lease(path: Path) -> LeaseOwner | None:
    """The owner written in a lease file, or None if there is no lease.

    Raises:
        HarnessError: for a lease file that is not one (naming the file); leases are only ever written whole.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        modified = Path(path).stat().st_mtime
    except FileNotFoundError:
        return None
    if not text.strip():
        # Created with O_EXCL and not written yet (or its writer died then): only its age can make it stale.
        return LeaseOwner("", "?", None, 0, None, "being written", modified, modified)
    try:
        return LeaseOwner(**json.loads(text))
    except (ValueError, TypeError) as exc:
        raise HarnessError(f"{path}: not a run lease ({exc}); delete it if no run is executing there") from exc


def _write_temporary(folder: Path, owner: LeaseOwner) -> Path:
    # Not ending in ".tmp": the runner deletes such files when it resets a run folder.
    tmp = folder / f".lease.{owner.token}.{time.monotonic_ns()}.new"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(owner), sort_keys=True))
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def create_exclusive(path: Path, owner: LeaseOwner) -> bool:
    """Create ``path`` holding ``owner``, atomically, unless it exists; return whether this call created it."""
    tmp = _write_temporary(path.parent, owner)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        # No hard links on this filesystem: O_EXCL instead (readers may briefly see an empty file).
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(tmp.read_text(encoding="utf-8"))
        return True
    finally:
        tmp.unlink(missing_ok=True)


class RunLease:
    """The lease of one run folder, used as a context manager or through ``acquire`` and ``release``.

    ``acquire`` waits for a live owner and takes over a stale one; a heartbeat thread runs while it is held.

    Args:
        folder: the run folder (created if missing).
        task: a label of the holder for messages and the lease file (e.g. ``ray task <id>``).
        heartbeat_s: seconds between heartbeats.
        stale_after_s: a lease whose heartbeat is older than this is stale.
        poll_s: seconds between checks while waiting for another owner.
        on_wait: called with a message once when acquiring must wait, and once per takeover.
    """

    def __init__(self, folder: Path, task: str = "", *, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                 stale_after_s: float = DEFAULT_STALE_AFTER_S, poll_s: float = 1.0,
                 on_wait: Callable[[str], None] | None = None) -> None:
        if not 0 < heartbeat_s < stale_after_s:
            raise HarnessError(f"lease heartbeat ({heartbeat_s}s) must be positive and below the stale "
                               f"timeout ({stale_after_s}s)")
        self.folder = Path(folder)
        self.path = self.folder / LEASE_NAME
        self.task = task
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.poll_s = poll_s
        self.on_wait = on_wait or (lambda message: None)
        self.owner: LeaseOwner | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_acquire(self) -> bool:
        """Take the lease if it is free or stale; return whether this process holds it now."""
        if self.owner is not None:
            raise HarnessError(f"{self.path}: this lease is already held by this process")
        self.folder.mkdir(parents=True, exist_ok=True)
        owner = current_owner(self.task)
        if not create_exclusive(self.path, owner):
            holder = read_lease(self.path)
            reason = None if holder is None else stale_reason(holder, self.stale_after_s)
            if reason is None or not self._take_over(holder, owner):  # type: ignore[arg-type]
                return False
            self.on_wait(f"took over the lease of {self.folder.name}: {reason}")
        self.owner = owner
        self.lost = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.folder.name}", daemon=True)
        self._thread.start()
        return True

    def acquire(self, timeout_s: float | None = None) -> None:
        """Wait until the lease is held (a live owner finishes, or its lease goes stale).

        Raises:
            HarnessError: if ``timeout_s`` passes first.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        announced = False
        while not self.try_acquire():
            holder = read_lease(self.path)
            if not announced and holder is not None:
                self.on_wait(f"{self.folder.name} is being run by {holder.describe()}; waiting for it")
                announced = True
            if deadline is not None and time.monotonic() > deadline:
                raise HarnessError(f"{self.path}: still held after {timeout_s}s"
                                   + (f" by {holder.describe()}" if holder else ""))
            time.sleep(self.poll_s)

    def release(self) -> None:
        """Stop the heartbeat and delete the lease file (unless it was taken over meanwhile)."""
        if self.owner is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = read_lease(self.path)
        if holder is not None and holder.token == self.owner.token:
            self.path.unlink(missing_ok=True)
        self.owner = None

    def __enter__(self) -> RunLease:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _take_over(self, stale: LeaseOwner, owner: LeaseOwner) -> bool:
        """Replace the stale lease with ours; only the holder of the guard file may remove a lease."""
        guard = self.folder / GUARD_NAME
        if not create_exclusive(guard, owner):
            guard_owner = read_lease(guard)
            # A guard is held for milliseconds; one this old was left by a contender that died holding it.
            if guard_owner is not None and time.time() - guard_owner.heartbeat > self.stale_after_s:
                guard.unlink(missing_ok=True)
            return False
        try:
            current = read_lease(self.path)
            if current is not None and current.token != stale.token:
                return False  # someone else took it over or the owner came back: look again
            self.path.unlink(missing_ok=True)
            return create_exclusive(self.path, owner)
        finally:
            guard.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            owner = self.owner
            if owner is None:
                return
            holder = read_lease(self.path)
            if holder is None or holder.token != owner.token:
                # Declared stale and taken over (a stalled heartbeat); never overwrite the new owner's lease.
                self.lost = True
                self.on_wait(f"lost the lease of {self.folder.name} to "
                             f"{holder.describe() if holder else 'nobody'}")
                return
            refreshed = replace(owner, heartbeat=time.time())
            os.replace(_write_temporary(self.folder, refreshed), self.path)
            self.owner = refreshed
