"""Read finished runs back from an output folder into a records DataFrame (the only I/O of the results code).

Only runs with a ``DONE`` marker count; their ``spec.json`` adds the ``variant`` column (backbone plus any
non-default preset, precision or ``--set``, so different settings never share a leaderboard row) and, for
transfer protocols, the ``source`` dataset. ``expected_cells`` turns planned specs into the cells a
complete leaderboard needs, so missing runs show up as incomplete rows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.protocols.spec import RunContext, RunSpec, model_slug, variant_suffix
from harness.results.aggregate import consistency_warnings
from harness.results.records import read_records
from harness.run_layout import DONE_NAME, RECORDS_NAME, SPEC_NAME


def is_transfer(protocol: str) -> bool:
    """Whether the protocol tests one source model on other datasets (its entry's kind is ``transfer``)."""
    from harness.protocols import PROTOCOLS

    return protocol in PROTOCOLS and PROTOCOLS.get(protocol).kind == "transfer"


def spec_variant(spec: RunSpec) -> str:
    """The variant label of a run: its backbone slug plus the suffix of non-default precision or ``--set``."""
    context = RunContext(spec.model, spec.pretrained, None, spec.device, spec.precision, spec.overrides)
    return model_slug(spec.model, spec.pretrained) + variant_suffix(context)


def read_spec(folder: Path) -> RunSpec:
    """The ``RunSpec`` stored in a run folder."""
    path = folder / SPEC_NAME
    try:
        return RunSpec.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise HarnessError(f"{path}: not a readable run spec ({exc})") from exc


def run_folders(out_dir: Path, protocol: str) -> list[Path]:
    """The run folders of ``protocol`` under ``out_dir`` (finished or not), sorted by name."""
    base = Path(out_dir) / protocol
    return sorted(p for p in base.iterdir() if (p / SPEC_NAME).is_file()) if base.is_dir() else []


def protocols_in(out_dir: Path) -> list[str]:
    """Protocols with at least one run folder under ``out_dir``."""
    root = Path(out_dir)
    if not root.is_dir():
        raise HarnessError(f"runs folder {root} does not exist")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and run_folders(root, p.name))


def load_records(out_dir: Path, protocol: str, run_keys: Iterable[str] | None = None) -> pd.DataFrame:
    """All records of the finished runs of ``protocol`` (optionally only ``run_keys``), in run-folder order."""
    wanted = set(run_keys) if run_keys is not None else None
    rows = []
    for folder in run_folders(out_dir, protocol):
        if not (folder / DONE_NAME).is_file() or (wanted is not None and folder.name not in wanted):
            continue
        spec = read_spec(folder)
        for row in read_records(folder / RECORDS_NAME):
            row["variant"] = spec_variant(spec)
            row["source"] = spec.evals[0].dataset if is_transfer(spec.protocol) else None
            rows.append(row)
    return pd.DataFrame(rows)


def load_specs(out_dir: Path, protocol: str) -> list[RunSpec]:
    """The specs of every run folder of ``protocol`` (finished or not)."""
    return [read_spec(folder) for folder in run_folders(out_dir, protocol)]


def expected_cells(specs: Sequence[RunSpec]) -> pd.DataFrame:
    """The (method, variant, dataset, subsample, shots, seed, draw) cells the planned ``specs`` will produce."""
    rows = [
        {"method": spec.method, "variant": spec_variant(spec), "dataset": evaluation.dataset,
         "subsample": evaluation.subsample, "shots": spec.shots, "seed": spec.seed, "draw": spec.draw}
        for spec in specs for evaluation in spec.evals
    ]
    return pd.DataFrame(rows, columns=["method", "variant", "dataset", "subsample", "shots", "seed", "draw"])


def source_of(specs: Sequence[RunSpec]) -> str | None:
    """The source dataset of transfer-protocol specs (the first evaluation), if they agree on one."""
    sources = {spec.evals[0].dataset for spec in specs if is_transfer(spec.protocol) and spec.evals}
    return sources.pop() if len(sources) == 1 else None



def dataset_display_and_order() -> tuple[dict[str, str], list[str]]:
    """Display names from the dataset cards, and every registered dataset in table order.

    Table order: the source first, then the targets, then the domain-shift sets; the papers' order
    within each role (others by name).
    """
    from harness.protocols.selection import ROLES, dataset_order_key, load_card_infos

    infos = load_card_infos()
    ranked = sorted(infos, key=lambda i: (ROLES.index(i.role) if i.role in ROLES else len(ROLES),
                                          dataset_order_key(i.name)))
    return {i.name: i.display_name for i in infos}, [i.name for i in ranked]


def protocol_table(specs: Sequence[RunSpec], out_dir: Path, fmt: str = "markdown") -> str:
    """The leaderboard of the planned ``specs`` (their protocol) from the finished runs under ``out_dir``."""
    from harness.results.evaluations import load_evaluations
    from harness.results.marks import noise_marks
    from harness.results.tables import leaderboard, render

    if not specs:
        raise HarnessError("empty plan: nothing to tabulate")
    protocol = specs[0].protocol
    records = load_records(out_dir, protocol, [spec.run_key for spec in specs])
    display, order = dataset_display_and_order()
    if records.empty:
        return f"no finished runs of {protocol} under {out_dir}\n"
    marks = noise_marks(load_evaluations(out_dir, protocol, [spec.run_key for spec in specs]), protocol)
    table = leaderboard(records, protocol, expected=expected_cells(specs), display=display, order=order,
                        source=source_of(specs), marks=marks)
    for warning in consistency_warnings(records):
        print(f"warning: {protocol}: {warning}", file=sys.stderr)
    return render(table, protocol, fmt)


def folder_table(out_dir: Path, protocol: str, fmt: str = "markdown") -> str:
    """The leaderboard of every run of ``protocol`` under ``out_dir``; unfinished run folders count as missing."""
    specs = load_specs(out_dir, protocol)
    if not specs:
        raise HarnessError(f"no runs of protocol {protocol} under {out_dir}")
    return protocol_table(specs, out_dir, fmt)
