"""Leaderboards: the aggregated rows beside the published numbers, as markdown or CSV.

Column order is fixed per protocol kind and rows are ordered by method (CLIP, CoOp, CoCoOp, then others by
name), variant (backbone and non-default settings), then dataset in the papers' order, Average last.
Numbers are percentages with two decimals; a missing value is ``-`` in markdown and empty in CSV.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from harness.errors import HarnessError
from harness.results import reference
from harness.results.aggregate import (
    AVERAGE,
    CI95_LABEL,
    NO_SEED,
    STD_LABEL,
    base2new_summary,
    few_shot_summary,
    transfer_summary,
)
from harness.results.marks import BEST, MARKS_RULE, WITHIN_NOISE
from harness.results.spread import DRAW_RULE, OUTLIER_RULE, describe_outliers

METHOD_ORDER = ("zeroshot", "zeroshot_ensemble", "coop", "cocoop")
COLUMNS = {
    "base2new": ["method", "model", "shots", "dataset", "base", "base_std", "base_ci95", "new", "new_std",
                 "new_ci95", "hm", "seeds", "seeds_expected", "published_base", "published_new", "published_hm",
                 "diff_base", "diff_new", "diff_hm", "vs_best", "outliers", "base_draw_std", "base_train_std",
                 "new_draw_std", "new_train_std", "status"],
    "transfer": ["method", "model", "shots", "dataset", "role", "accuracy", "std", "ci95", "seeds",
                 "seeds_expected", "published", "diff", "vs_best", "outliers", "draw_std", "train_std", "status"],
    "few_shot": ["method", "model", "dataset", "shots", "accuracy", "std", "ci95", "seeds", "seeds_expected",
                 "published", "diff", "vs_best", "outliers", "draw_std", "train_std", "status"],
}


def kind_of(protocol: str) -> str:
    """``base2new``, ``transfer`` or ``few_shot``: how a protocol's results are tabulated."""
    from harness.protocols import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise HarnessError(f"no leaderboard for protocol {protocol!r}; known: {', '.join(PROTOCOLS.names())}")
    return PROTOCOLS.get(protocol).kind


def compares_to_published(model: str) -> bool:
    """Published numbers are ViT-B/16: compare only runs whose backbone is a ViT-B/16."""
    return "vitb16" in "".join(ch for ch in model.lower() if ch.isalnum())


def method_rank(method: str) -> tuple[int, str]:
    """Sort key of methods: CLIP, CLIP (ensemble), CoOp, CoCoOp, then others by name."""
    return (METHOD_ORDER.index(method), method) if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def _summary(records: pd.DataFrame, protocol: str, expected: pd.DataFrame | None, order: Sequence[str],
             source: str | None) -> pd.DataFrame:
    kind = kind_of(protocol)
    if kind == "base2new":
        return base2new_summary(records, expected, order)
    if kind == "few_shot":
        return few_shot_summary(records, expected, order)
    if source is None:
        trained = records["train_dataset"].dropna().unique() if "train_dataset" in records else []
        source = str(trained[0]) if len(trained) == 1 else None
    return transfer_summary(records, source, expected, order)


def _published(protocol: str, row: pd.Series, display: Mapping[str, str], column: str) -> float:
    if not compares_to_published(str(row["variant"])):
        return math.nan
    name = AVERAGE if row["dataset"] == AVERAGE else display.get(str(row["dataset"]), str(row["dataset"]))
    shots = int(row["shots"])
    if kind_of(protocol) != "few_shot" and shots == NO_SEED:
        shots = 16  # a training-free method's row sits beside the published 16-shot protocol's CLIP row
    value = reference.lookup(protocol, str(row["method"]), name, column, shots)
    return math.nan if value is None else value


def leaderboard(records: pd.DataFrame, protocol: str, *, expected: pd.DataFrame | None = None,
                display: Mapping[str, str] | None = None, order: Sequence[str] = (),
                source: str | None = None, marks: pd.DataFrame | None = None) -> pd.DataFrame:
    """The leaderboard of ``protocol`` as a DataFrame with the fixed columns of ``COLUMNS[kind]``.

    Args:
        records: run records (see ``harness.results.aggregate``).
        protocol: protocol name.
        expected: planned cells, for completeness (``None``: inferred from the records).
        display: dataset registry name -> display name (the papers' names; used to find published numbers).
        order: dataset order.
        source: the source dataset of a transfer protocol (``None``: the records' unique ``train_dataset``).
        marks: ``harness.results.marks.noise_marks`` of the same runs (``vs_best``); ``None`` leaves it empty.
    """
    display = dict(display or {})
    summary = _summary(records, protocol, expected, order, source)
    kind = kind_of(protocol)
    if summary.empty:
        return pd.DataFrame(columns=COLUMNS[kind])
    lookup = _mark_lookup(marks, kind)
    rows = [_leaderboard_row(row, protocol, kind, display) for _, row in summary.iterrows()]
    for row, (_, summary_row) in zip(rows, summary.iterrows()):
        shots = int(summary_row["shots"]) if kind == "few_shot" else None
        row["vs_best"] = lookup.get((summary_row["method"], summary_row["variant"], summary_row["dataset"], shots), "")
    table = pd.DataFrame(rows)
    table = table.sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)
    table["shots"] = table["shots"].astype("Int64")
    return table[COLUMNS[kind]]


def _mark_lookup(marks: pd.DataFrame | None, kind: str) -> dict[tuple, str]:
    if marks is None or marks.empty:
        return {}
    return {(m, v, d, int(k) if kind == "few_shot" and k is not None and not pd.isna(k) else None): mark
            for m, v, d, k, mark in marks[["method", "variant", "dataset", "shots", "vs_best"]].itertuples(index=False)}


def _leaderboard_row(row: pd.Series, protocol: str, kind: str, display: Mapping[str, str]) -> dict[str, object]:
    shots = int(row["shots"])
    out: dict[str, object] = {
        "method": reference.method_display(str(row["method"])), "model": row["variant"],
        "shots": pd.NA if shots == NO_SEED else shots, "dataset": display.get(str(row["dataset"]), row["dataset"]),
        "seeds": int(row["n_seeds"]), "seeds_expected": int(row["n_expected"]),
        "status": "" if row["complete"] else str(row["note"]),
        "_rank": (method_rank(str(row["method"])), str(row["variant"])),
    }
    if kind == "base2new":
        for part in ("base", "new", "hm"):
            out[part] = row[part]
            out[f"published_{part}"] = _published(protocol, row, display, part)
            out[f"diff_{part}"] = row[part] - out[f"published_{part}"]  # type: ignore[operator]
        for part in ("base", "new"):
            for stat in ("std", "ci95", "draw_std", "train_std"):
                out[f"{part}_{stat}"] = row.get(f"{part}_{stat}")
        outliers = {part: _tuple(row.get(f"{part}_outliers")) for part in ("base", "new")}
        out["outliers"] = "; ".join(f"{p}: {_seed_list(o)}" for p, o in outliers.items() if o)
        out["status"] = _join(out["status"], *(describe_outliers(o, f"{p}: ") for p, o in outliers.items()))
        return out
    published = _published(protocol, row, display, "accuracy")
    out.update(accuracy=row["accuracy"], std=row.get("std"), ci95=row.get("ci95"), published=published,
               diff=row["accuracy"] - published, role=row.get("role", ""), draw_std=row.get("draw_std"),
               train_std=row.get("train_std"))
    outliers = _tuple(row.get("outliers"))
    out["outliers"] = _seed_list(outliers)
    out["status"] = _join(out["status"], describe_outliers(outliers))
    return out


def _tuple(value: object) -> tuple:
    return value if isinstance(value, tuple) else ()  # Average rows have none (NaN after concatenation)


def _seed_list(outliers: tuple) -> str:
    return ", ".join(str(seed) for seed, _, _ in outliers)


def _join(*notes: object) -> str:
    return "; ".join(str(n) for n in notes if n)


def _number(value: object, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):+.2f}" if signed else f"{float(value):.2f}"


def _with_std(value: object, std: object) -> str:
    text = _number(value)
    return text if text == "-" or _number(std) == "-" else f"{text} ± {_number(std)}"


def _seeds(row: pd.Series) -> str:
    return str(row["seeds"]) if row["seeds"] == row["seeds_expected"] else f"{row['seeds']}/{row['seeds_expected']}"


def _markdown_cells(row: pd.Series, kind: str) -> list[str]:
    head = [str(row["method"]), str(row["model"]), str(row["dataset"])]
    if kind == "base2new":
        published = [_number(row[f"published_{p}"]) for p in ("base", "new", "hm")]
        return head + [_with_std(row["base"], row["base_std"]), _with_std(row["new"], row["new_std"]),
                       _marked(_number(row["hm"]), row["vs_best"]), _seeds(row),
                       "-" if published == ["-"] * 3 else " / ".join(published),
                       _number(row["diff_hm"], signed=True), str(row["status"])]
    if kind == "transfer" and row["role"] == "source":
        head[2] += " (source)"
    shots = [str(row["shots"])] if kind == "few_shot" else []
    return head + shots + [_marked(_with_std(row["accuracy"], row["std"]), row["vs_best"]), _seeds(row),
                           _number(row["published"]), _number(row["diff"], signed=True), str(row["status"])]


def _marked(text: str, mark: object) -> str:
    """Bold for the best method of a dataset, a dagger for one within noise of it (``MARKS_RULE``)."""
    if mark == BEST:
        return f"**{text}**"
    return f"{text} †" if mark == WITHIN_NOISE else text


def has_draws(table: pd.DataFrame) -> bool:
    """Whether any row has a draw / training split of its spread (runs with ``--draws``)."""
    columns = [c for c in table.columns if c.endswith("draw_std")]
    return bool(columns) and bool(table[columns].notna().to_numpy().any())


def _draw_cell(row: pd.Series, kind: str) -> str:
    if kind == "base2new":
        parts = [f"{p[0].upper()} {_number(row[f'{p}_draw_std'])} / {_number(row[f'{p}_train_std'])}"
                 for p in ("base", "new")]
        return "; ".join(parts)
    return f"{_number(row['draw_std'])} / {_number(row['train_std'])}"


MARKDOWN_HEADERS = {
    "base2new": ["Method", "Model", "Dataset", "Base", "New", "H", "Seeds", "Published B / N / H", "Δ H", "Status"],
    "transfer": ["Method", "Model", "Dataset", "Accuracy", "Seeds", "Published", "Δ", "Status"],
}
LEGENDS = {
    "base2new": "H = 2BN/(B+N) of the seed-averaged base and new accuracies; the Average row is H of the "
                "averaged base and new accuracies (as the papers compute it).",
    "transfer": "The source row is the accuracy on the training dataset; the Average is over the targets only.",
    "few_shot": "One column per shot count (every shot count trains on all classes); zero-shot methods appear at "
                "0 shots; [published, Δ] where the papers give the number.",
}


def to_markdown(table: pd.DataFrame, protocol: str) -> str:
    """A markdown leaderboard with a legend saying what ± and the averages mean."""
    kind = kind_of(protocol)
    draws = has_draws(table)
    if kind == "few_shot":
        headers, body = _few_shot_markdown(table, draws)
    else:
        headers = list(MARKDOWN_HEADERS[kind])
        body = [_markdown_cells(row, kind) for _, row in table.iterrows()]
        if draws:  # a column only for runs with several few-shot draws per seed, before Status
            headers.insert(-1, "Std: draw / training")
            body = [cells[:-1] + [_draw_cell(row, kind), cells[-1]] for cells, (_, row) in zip(body, table.iterrows())]
    lines = [
        f"### {protocol}: top-1 accuracy (%)",
        "",
        f"Mean ± std over seeds; {STD_LABEL}; the CSV also gives {CI95_LABEL}.",
        f"{LEGENDS[kind]} Published: the papers' {reference.PUBLISHED_BACKBONE} numbers (shown for ViT-B/16 runs "
        "only); Δ = ours − published. Seeds: present, /expected when incomplete.",
        f"{MARKS_RULE}. Status names outlier seeds ({OUTLIER_RULE}).",
        *([f"Runs with several few-shot draws per seed: Seeds counts runs (seeds x draws); {DRAW_RULE}."]
          if draws else []),
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def _few_shot_markdown(table: pd.DataFrame, draws: bool = False) -> tuple[list[str], list[list[str]]]:
    """Few-shot rows pivoted: one row per method and dataset, one column per shot count."""
    shots = sorted({int(k) for k in table["shots"].dropna()})
    headers = ["Method", "Model", "Dataset", *[f"{k} shots" for k in shots], "Seeds", "Status"]
    body = []
    for (method, model, dataset), group in table.groupby(["method", "model", "dataset"], sort=False):
        by_shots = {int(row["shots"]): row for _, row in group.iterrows()}
        cells = [str(method), str(model), str(dataset)]
        for k in shots:
            row = by_shots.get(k)
            cell = "" if row is None else _marked(_with_std(row["accuracy"], row["std"]), row["vs_best"])
            if row is not None and _number(row["published"]) != "-":
                cell += f" [{_number(row['published'])}, {_number(row['diff'], signed=True)}]"
            if row is not None and draws and _number(row["draw_std"]) != "-":
                cell += f" (draw / training std {_draw_cell(row, 'few_shot')})"
            cells.append(cell)
        fewest = min(by_shots.values(), key=lambda r: r["seeds"])
        statuses = [f"{k} shots: {r['status']}" for k, r in by_shots.items() if r["status"]]
        body.append([*cells, _seeds(fewest), "; ".join(statuses)])
    return headers, body


def to_csv(table: pd.DataFrame) -> str:
    """The leaderboard as CSV: fixed columns, numbers rounded to 4 decimals, missing values empty."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.4f", lineterminator="\n")
    return buffer.getvalue()


def render(table: pd.DataFrame, protocol: str, fmt: str) -> str:
    """Render in ``fmt`` (``markdown`` or ``csv``)."""
    if fmt == "markdown":
        return to_markdown(table, protocol)
    if fmt == "csv":
        return to_csv(table)
    raise HarnessError(f"unknown table format {fmt!r}; expected markdown or csv")
