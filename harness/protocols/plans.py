"""The protocols as pure planning functions: dataset names, seeds and a method in, a list of ``RunSpec`` out.

Each follows the official scripts (spec section 11):

- ``base2new``: per dataset and seed, train on the base classes (16 shots), test on base and on new classes
  with the same model (``base2new_train.sh`` / ``base2new_test.sh``; both use ``NUM_SHOTS 16``).
- ``cross_dataset``: per seed, train on the source (all classes, 16 shots), test on the source and on each
  target's full test set with all classes (``xd_train.sh`` / ``xd_test.sh``: no ``NUM_SHOTS``).
- ``domain_generalization``: the same source model tested on the domain-shift sets.
- ``few_shot``: per dataset, shot count and seed, train on all classes and test on the full test set.

Training-free methods run the same evaluations once: seeds do not change them, so they collapse to one run.
No I/O happens here; the caller picks the dataset names (``harness.protocols.selection``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from harness.errors import HarnessError
from harness.protocols.spec import EvalSpec, MethodChoice, RunContext, RunSpec, build_run_key, variant_suffix

FEW_SHOT_SHOTS = (1, 2, 4, 8, 16)
DRAW_PROTOCOLS = ("few_shot", "base2new")
DEFAULT_SHOTS = 16


@dataclass(frozen=True)
class DatasetRoles:
    """The dataset names a protocol may use, by role (a dataset card's ``role``)."""

    source: str | None
    targets: tuple[str, ...] = ()
    domain_shift: tuple[str, ...] = ()


Planner = Callable[[DatasetRoles, Sequence[int], MethodChoice, "int | None", RunContext], list[RunSpec]]


def _spec(protocol: str, method: MethodChoice, context: RunContext, key_part: str, *, train_dataset: str | None,
          shots: int | None, seed: int | None, subsample: str, evals: Sequence[EvalSpec]) -> RunSpec:
    trained = method.trainable
    return RunSpec(
        protocol=protocol,
        run_key=build_run_key(method, context, key_part, shots if trained else None, seed if trained else None),
        method=method.name,
        preset=method.preset,
        trainable=trained,
        train_dataset=train_dataset if trained else None,
        shots=shots if trained else None,
        seed=seed if trained else None,
        train_subsample=subsample,
        evals=tuple(evals),
        overrides=context.overrides,
        model=context.model,
        pretrained=context.pretrained,
        data_root=context.data_root,
        device=context.device,
        precision=context.precision,
        includes=context.includes,
    )


def _seeds_for(method: MethodChoice, seeds: Sequence[int]) -> list[int | None]:
    """The seeds a method runs with: all of them if it trains, else one seed-less run."""
    if not seeds:
        raise HarnessError("no seeds given: pass at least one, e.g. --seeds 1,2,3")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"seeds {list(seeds)} repeat a seed")
    return list(seeds) if method.trainable else [None]


def _own_datasets(datasets: DatasetRoles) -> list[str]:
    """The datasets a per-dataset protocol trains and tests on: the source (if any), then the targets."""
    names = [datasets.source] if datasets.source is not None else []
    names += [name for name in datasets.targets if name not in names]
    if not names:
        raise HarnessError("no datasets selected")
    return names


def _check_shots(shots: int) -> int:
    if shots < 1:
        raise HarnessError(f"shots must be at least 1, got {shots}")
    return shots


def plan_base2new(datasets: DatasetRoles, seeds: Sequence[int], method: MethodChoice, shots: int | None,
                  context: RunContext) -> list[RunSpec]:
    """Per dataset (source and targets) and seed: train on base classes, test on base and new classes."""
    shots = _check_shots(DEFAULT_SHOTS if shots is None else shots)
    specs = []
    for dataset in _own_datasets(datasets):
        for seed in _seeds_for(method, seeds):
            # Zero-shot builds its classifier from the class names only, so it needs no few-shot sampling.
            eval_shots = shots if method.trainable else None
            evals = [EvalSpec(dataset, "base", "test", eval_shots), EvalSpec(dataset, "new", "test", eval_shots)]
            part = f"{dataset}-base" if method.trainable else f"{dataset}-base2new"
            specs.append(_spec("base2new", method, context, part, train_dataset=dataset, shots=shots, seed=seed,
                               subsample="base", evals=evals))
    return specs


def _plan_transfer(protocol: str, eval_sets: Sequence[str], datasets: DatasetRoles, seeds: Sequence[int],
                   method: MethodChoice, shots: int | None, context: RunContext) -> list[RunSpec]:
    """One source model per seed, tested on the source and on each of ``eval_sets`` (full test, all classes)."""
    shots = _check_shots(DEFAULT_SHOTS if shots is None else shots)
    if datasets.source is None:
        raise HarnessError(f"protocol {protocol} needs a source dataset to train on")
    if not eval_sets:
        raise HarnessError(f"protocol {protocol}: no target datasets to evaluate on")
    names = [datasets.source, *[name for name in eval_sets if name != datasets.source]]
    evals = [EvalSpec(name, "all", "test", None) for name in names]
    return [
        _spec(protocol, method, context, f"{datasets.source}-all", train_dataset=datasets.source, shots=shots,
              seed=seed, subsample="all", evals=evals)
        for seed in _seeds_for(method, seeds)
    ]


def plan_cross_dataset(datasets: DatasetRoles, seeds: Sequence[int], method: MethodChoice, shots: int | None,
                       context: RunContext) -> list[RunSpec]:
    """Per seed: train on the source (all classes), test on the source and the other datasets' full test sets."""
    return _plan_transfer("cross_dataset", datasets.targets, datasets, seeds, method, shots, context)


def plan_domain_generalization(datasets: DatasetRoles, seeds: Sequence[int], method: MethodChoice,
                               shots: int | None, context: RunContext) -> list[RunSpec]:
    """Per seed: the source model tested on the source and on each domain-shift set (its own classes)."""
    return _plan_transfer("domain_generalization", datasets.domain_shift, datasets, seeds, method, shots, context)


def plan_few_shot(datasets: DatasetRoles, seeds: Sequence[int], method: MethodChoice, shots: int | None,
                  context: RunContext) -> list[RunSpec]:
    """Per dataset, shot count (1, 2, 4, 8, 16, or only ``shots``) and seed: train on all classes, test.

    The number of epochs per shot count comes from the method's preset (``epochs_by_shots``), at run time.
    """
    shot_list = FEW_SHOT_SHOTS if shots is None else (_check_shots(shots),)
    specs = []
    for dataset in _own_datasets(datasets):
        evals = [EvalSpec(dataset, "all", "test", None)]
        if not method.trainable:
            specs.append(_spec("few_shot", method, context, f"{dataset}-all", train_dataset=dataset, shots=None,
                               seed=None, subsample="all", evals=evals))
            continue
        for k in shot_list:
            for seed in _seeds_for(method, seeds):
                specs.append(_spec("few_shot", method, context, f"{dataset}-all", train_dataset=dataset, shots=k,
                                   seed=seed, subsample="all", evals=evals))
    return specs


def expand_draws(specs: Sequence[RunSpec], draws: int, context: RunContext) -> list[RunSpec]:
    """``draws`` few-shot draws per trained run (``--draws``): draw 0 is the run itself, then draws 1..N-1.

    An extension beyond the official protocol (one draw per seed): draw d > 0 of seed s trains with the same
    seed on another few-shot selection (``harness.data.fewshot.draw_rng``), so that the spread over draws
    measures the variance the selection causes, apart from training. Training-free runs sample nothing and
    stay single. Draw 0 keeps its spec and run key exactly.

    Raises:
        HarnessError: for ``draws`` < 1, or more than one draw on a protocol other than few_shot/base2new.
    """
    if draws < 1:
        raise HarnessError(f"--draws must be at least 1, got {draws}")
    if draws == 1:
        return list(specs)
    protocols = sorted({spec.protocol for spec in specs if spec.protocol not in DRAW_PROTOCOLS})
    if protocols:
        raise HarnessError(f"--draws applies to {', '.join(DRAW_PROTOCOLS)}, not to {', '.join(protocols)}")
    suffix = variant_suffix(context)
    expanded = []
    for spec in specs:
        expanded.append(spec)
        if not spec.trainable:
            continue
        stem = spec.run_key[: len(spec.run_key) - len(suffix)] if suffix else spec.run_key
        expanded += [replace(spec, draw=draw, run_key=f"{stem}-draw{draw}{suffix}") for draw in range(1, draws)]
    return expanded
