"""The run lease: exclusion between processes, takeover of dead or silent owners, heartbeat, bad files."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.executors.locking import (
    LEASE_NAME,
    LeaseOwner,
    RunLease,
    current_owner,
    process_is_gone,
    read_lease,
    stale_reason,
)

FORK = multiprocessing.get_context("fork")


def _hold_and_log(folder: str, log: str, hold_s: float) -> None:
    """Child process: hold the lease for ``hold_s`` and log when it entered and left."""
    with RunLease(Path(folder), task=f"child {os.getpid()}", heartbeat_s=0.05, stale_after_s=30, poll_s=0.01):
        with open(log, "a") as handle:
            handle.write(f"enter {os.getpid()} {time.time()}\n")
        time.sleep(hold_s)
        with open(log, "a") as handle:
            handle.write(f"leave {os.getpid()} {time.time()}\n")


def _hold_forever(folder: str, ready: object) -> None:
    lease = RunLease(Path(folder), task="doomed", heartbeat_s=0.05, stale_after_s=30)
    lease.acquire()
    ready.set()  # type: ignore[attr-defined]
    time.sleep(60)


def test_two_processes_never_hold_the_lease_together(tmp_path):
    log = tmp_path / "log.txt"
    children = [FORK.Process(target=_hold_and_log, args=(str(tmp_path / "run"), str(log), 0.3)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(20)
        assert child.exitcode == 0
    events = [line.split() for line in log.read_text().splitlines()]
    assert [kind for kind, _, _ in events] == ["enter", "leave", "enter", "leave"]
    assert events[0][1] == events[1][1] and events[2][1] == events[3][1] != events[0][1]
    assert not (tmp_path / "run" / LEASE_NAME).exists()


def test_the_lease_of_a_killed_process_is_taken_over_at_once(tmp_path):
    folder = tmp_path / "run"
    ready = FORK.Event()
    child = FORK.Process(target=_hold_forever, args=(str(folder), ready))
    child.start()
    assert ready.wait(20)
    assert read_lease(folder / LEASE_NAME).pid == child.pid
    contender = RunLease(folder, task="retry", stale_after_s=30)
    assert not contender.try_acquire()  # the owner is alive and beating
    os.kill(child.pid, signal.SIGKILL)
    time.sleep(0.2)
    messages: list[str] = []
    # Not joined yet: the killed child is a zombie, which must count as gone.
    contender = RunLease(folder, task="retry", stale_after_s=30, on_wait=messages.append)
    contender.acquire(timeout_s=5)
    child.join()
    assert read_lease(folder / LEASE_NAME).pid == os.getpid()
    assert any(f"pid {child.pid} (doomed) is gone" in m for m in messages)
    contender.release()
    assert not (folder / LEASE_NAME).exists()


def _write_owner(folder: Path, owner: LeaseOwner) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LEASE_NAME).write_text(json.dumps(asdict(owner)))


def test_an_owner_on_another_host_is_stale_only_after_its_heartbeat_times_out(tmp_path):
    remote = replace(current_owner("ray task abc"), host="node-7.cluster", pid=1)
    _write_owner(tmp_path, replace(remote, heartbeat=time.time() - 5))
    assert not RunLease(tmp_path, stale_after_s=60).try_acquire()
    _write_owner(tmp_path, replace(remote, heartbeat=time.time() - 61))
    lease = RunLease(tmp_path, stale_after_s=60)
    assert lease.try_acquire()
    assert read_lease(tmp_path / LEASE_NAME).host == socket.gethostname()
    lease.release()


def test_stale_reasons_on_this_host():
    me = current_owner()
    assert stale_reason(me) is None
    assert process_is_gone(os.getpid(), me.pid_start) is False
    reused = replace(me, pid_start="1")  # same pid, another process start time: the pid was reused
    assert "is gone" in stale_reason(reused)
    rebooted = replace(me, boot_id="not-this-boot")
    assert "rebooted" in stale_reason(rebooted)
    assert "no heartbeat for 500s" in stale_reason(replace(me, host="elsewhere"), 100, now=me.heartbeat + 500)


def test_heartbeat_refreshes_the_lease_and_release_removes_it(tmp_path):
    with RunLease(tmp_path, heartbeat_s=0.05, stale_after_s=10) as lease:
        first = read_lease(tmp_path / LEASE_NAME)
        time.sleep(0.4)
        later = read_lease(tmp_path / LEASE_NAME)
        assert later.token == first.token == lease.owner.token
        assert later.heartbeat > first.heartbeat
    assert not (tmp_path / LEASE_NAME).exists()
    assert not list(tmp_path.glob(".lease.*.new"))


def test_a_lost_lease_is_noticed_and_not_deleted(tmp_path):
    lease = RunLease(tmp_path, heartbeat_s=0.05, stale_after_s=10, on_wait=lambda m: None)
    lease.acquire()
    usurper = replace(current_owner("usurper"), host="other-node")
    _write_owner(tmp_path, usurper)  # as if this lease had been declared stale and taken over
    time.sleep(0.3)
    assert lease.lost
    lease.release()
    assert read_lease(tmp_path / LEASE_NAME).token == usurper.token


def test_waiting_times_out_with_the_owner_named(tmp_path):
    with RunLease(tmp_path, task="first"):
        with pytest.raises(HarnessError, match=r"still held after 0.2s by .* \(first\)"):
            RunLease(tmp_path, poll_s=0.05).acquire(timeout_s=0.2)


def test_bad_and_empty_lease_files(tmp_path):
    (tmp_path / LEASE_NAME).write_text("{not json")
    with pytest.raises(HarnessError, match=r"\.lease\.json: not a run lease"):
        RunLease(tmp_path).try_acquire()
    # An empty lease is one being written: left alone while young, taken over once older than the timeout.
    (tmp_path / LEASE_NAME).write_text("")
    assert not RunLease(tmp_path, stale_after_s=60).try_acquire()
    old = time.time() - 120
    os.utime(tmp_path / LEASE_NAME, (old, old))
    lease = RunLease(tmp_path, stale_after_s=60)
    assert lease.try_acquire()
    lease.release()


def test_bad_timing_settings_are_rejected(tmp_path):
    with pytest.raises(HarnessError, match="heartbeat"):
        RunLease(tmp_path, heartbeat_s=60, stale_after_s=30)
