"""What ``harness run`` says after failed runs: retry only what a rerun can fix, otherwise what to change.

A failed outcome whose error starts with ``error: `` came from a ``HarnessError`` or a file-system error
the user must fix (bad input, NaN loss, unreadable resume state, read-only folder, full disk): rerunning
the same command fails the same way until what its message names is changed. Any other failure (a crash,
a killed or out-of-memory worker, a transient I/O error, an interruption) may pass on a rerun, which
resumes from the run's checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.engine.runner import RunOutcome

DETERMINISTIC_PREFIX = "error: "


def needs_change(outcome: RunOutcome) -> bool:
    """Whether rerunning ``outcome``'s run unchanged would fail again (see the module docstring)."""
    return outcome.error.startswith(DETERMINISTIC_PREFIX)


def failure_summary(failed: Sequence[RunOutcome], total: int) -> str:
    """The closing line after ``failed`` of ``total`` runs failed (empty when none failed)."""
    if not failed:
        return ""
    fixed_first = [o for o in failed if needs_change(o)]
    retryable = len(failed) - len(fixed_first)
    head = f"error: {len(failed)} of {total} runs failed"
    if not fixed_first:
        return f"{head}; rerun the same command to retry them"
    keys = ", ".join(o.run_key for o in fixed_first[:3]) + (" ..." if len(fixed_first) > 3 else "")
    line = (f"{head}; {len(fixed_first)} would fail again as they are ({keys}): change what each error above "
            "names, then rerun the same command (finished runs are kept)")
    if retryable:
        line += f"; the other {retryable} may pass on a plain rerun"
    return line
