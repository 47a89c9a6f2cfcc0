"""Finished runs that no longer match what a command would compute: stale runs.

The run key names the method, model, dataset, shots, seed and ``--set`` overrides, not the preset's content
nor the weights. A finished run is compared with the configuration its preset gives now (``config_hash``,
which covers only keys that can change numbers: see ``MethodConfig.digest``) and with the weights the model
name loads now (``backbone_sha256``), so that editing a preset or replacing the weights cannot leave old
results counted as current, while a speed-only key or a new key at its default does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.engine.pipeline import cached_backbone, resolve_method_config
from harness.errors import HarnessError
from harness.protocols.spec import RunSpec
from harness.run_layout import RECORDS_NAME, is_done, run_dir


def run_config(spec: RunSpec):
    """The config a planned run uses: its preset, ``--precision``, ``--set``, epochs for its shots and dataset."""
    return resolve_method_config(spec.preset, precision=spec.precision, overrides=dict(spec.overrides),
                                 shots=spec.shots, dataset=spec.train_dataset)


def stale_reason(spec: RunSpec, out_dir: Path) -> str:
    """Why a finished run's records no longer match what ``spec`` would compute now ("" when they match)."""
    from harness.results.records import read_records

    records = read_records(run_dir(spec, out_dir) / RECORDS_NAME)
    if not records:
        return ""
    config_hash = run_config(spec).digest()
    stored = sorted({str(r.get("config_hash")) for r in records})
    if stored != [config_hash]:
        return (f"its records have config hash {', '.join(stored)}, methods/{spec.preset}.yaml with this "
                f"command's --set now gives {config_hash}")
    backbone = cached_backbone(spec.model, spec.pretrained, spec.device, spec.precision)
    stored = sorted({str(r.get("backbone_sha256")) for r in records})
    if stored != [backbone.weights_sha256]:
        return (f"its records were made with weights sha256 {', '.join(s[:12] for s in stored)}, "
                f"{spec.model!r} now loads {backbone.weights_sha256[:12]}")
    return ""


def check_finished_runs(specs: list[RunSpec], out_dir: Path) -> None:
    """Raise ``HarnessError`` if a finished run of the plan is stale (see ``stale_reason``); nothing is deleted."""
    stale = []
    for spec in specs:
        if is_done(spec, out_dir):
            reason = stale_reason(spec, out_dir)
            if reason:
                stale.append(f"  {spec.protocol}/{spec.run_key}: {reason}")
    if stale:
        shown = "\n".join(stale[:5]) + (f"\n  ... and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise HarnessError(
            f"{len(stale)} finished run(s) under {out_dir} were made with another configuration or other weights "
            f"than this command uses:\n{shown}\nTheir results are kept. Rerun with --force to redo them, or "
            "choose another --out."
        )


def format_plan(specs: Sequence[RunSpec], out_dir: Path) -> str:
    """The plan as text: one line per run (done or to run), then the totals."""
    lines, states = [], []
    for spec in specs:
        state = "todo"
        if is_done(spec, out_dir):
            state = "stale" if stale_reason(spec, out_dir) else "done"
        states.append(state)
        evals = ", ".join(f"{e.dataset}:{e.subsample}" for e in spec.evals)
        training = "no training"
        if spec.trainable:
            epochs = run_config(spec).max_epoch
            training = (f"train {spec.train_dataset}:{spec.train_subsample} {spec.shots} shots seed {spec.seed}, "
                        f"{epochs} epochs")
        lines.append(f"{state}  {spec.protocol}/{spec.run_key}  [{spec.preset}; {training}; eval {evals}]")
    todo, stale = states.count("todo"), states.count("stale")
    note = f", {stale} stale (made with another config or weights: run stops unless --force)" if stale else ""
    lines.append(f"{len(specs)} runs, {len(specs) - todo - stale} done, {todo} to run{note} (output: {out_dir})")
    return "\n".join(lines) + "\n"
