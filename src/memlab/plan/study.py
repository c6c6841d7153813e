"""The study plan: every run of a study as typed values, from the config to the table columns.

:func:`plan_study` turns a schema-validated config (defaults filled in by the schema, the one
source of keys and defaults) into a :class:`Study`: its datasets with their slice of the grid, its
model variants (:mod:`memlab.plan.kinds`), its regimes and its runs. A :class:`Run` knows its path
under ``results/runs``, the settings each rule needs and the columns every table carries, so a
hyperparameter goes from YAML to a figure axis in one shape.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memlab.columnar import Columns, constant
from memlab.data import datasets as data
from memlab.data.canaries import check_combination as check_canaries
from memlab.data.canaries import has_canaries
from memlab.io import MemlabInputError
from memlab.plan.kinds import VARIANT_COLUMNS, Variant, expand_models
from memlab.plan.power import PowerGates, planned_scores_powered

# A model that does not train (k-NN) has no regime; its runs carry this pseudo-regime, a name the
# schema reserves.
MEMORY_REGIME = "memory"
RUNS_DIR = "results/runs"
# A run's path under RUNS_DIR; its fields are the wildcards of the rules that work per run.
RUN_PATTERN = "{dataset}/noise{noise}/n{size}/{model}/{regime}"
# Where language models' runs on text datasets live (the same pattern below it; rules
# train_sequence and evaluate_sequence), apart from the classification runs' rules.
SEQUENCE_RUNS_DIR = "results/sequences"
# A run's replicas are trained and evaluated in blocks, one job each, under the run's directory.
BLOCK_PATTERN = RUN_PATTERN + "/block{block}"
# The training defaults a regime may override, and the two that only early stopping uses.
TRAINING_KEYS = ("batch_size", "lr", "max_epochs", "beta1", "beta2", "eps")
EARLY_STOPPING_KEYS = ("patience", "val_fraction")
# How a replica's training ended, the stopping rules a regime has: 100% train accuracy (with
# stop_at_fit), early stopping's patience, or the epoch cap. Evaluations store the index (-1: the
# model does not train); here, not in memlab.engine.train, so the analyses read it without torch.
# "solved": a closed-form fit (random features), which has no epochs and is always trained.
STOP_REASONS = ("fit", "early_stopping", "max_epochs", "solved")

# A replica stopped by the epoch cap is still improving while its train loss falls by more than
# this share per epoch over its last epochs (memlab.engine.train.loss_drop): 0.25%, i.e. 5% over 20
# epochs (measured on digits, config/README.md: a plateau moves by under 0.1% per epoch, an
# unregularized MLP capped while it fits noisy labels falls by 1.7-3.4%).
STILL_IMPROVING = 0.0025


def undertrained(
    stop_reason: np.ndarray, fit_epoch: np.ndarray, loss_drop: np.ndarray | None
) -> np.ndarray:
    """[R] bool: replicas stopped by the epoch cap while still improving (their scores would
    measure the budget, not the model), the only trained replicas the scores leave out.

    Every replica of a model that trains reached a stopping rule by construction; the ones that
    reached it by fitting their subset or by early stopping are trained, and so are those stopped
    by ``max_epochs`` once they fit their subset (stop_at_fit false) or had stopped improving:
    ``loss_drop`` (``memlab.engine.train.loss_drop``, stored per replica at train time) at most
    STILL_IMPROVING. A capped replica whose drop is unknown (NaN: fewer than 2 epochs, or a bank
    written before ``loss_drop`` existed) cannot show it converged and counts as under-trained.
    ``stop_reason`` is the index into ``STOP_REASONS`` (-1: not trained, never under-trained).
    """
    stop_reason = np.asarray(stop_reason)
    capped = stop_reason == STOP_REASONS.index("max_epochs")
    if loss_drop is None:
        loss_drop = np.full(stop_reason.shape, np.nan)
    improving = ~(np.asarray(loss_drop, np.float64) <= STILL_IMPROVING)  # NaN: improving
    return capped & (np.asarray(fit_epoch) < 0) & improving


@dataclass(frozen=True)
class Regime:
    """Everything that shapes a training run: a regime merged over ``training``, once.

    ``patience`` and ``val_fraction`` are None unless the regime stops early (they do not shape
    the run then). ``log_every`` (the config's ``training.log_every``, whose default is the
    schema's) only says how often to log progress and is left out of :meth:`settings`, so
    changing it reruns nothing; it is None in a regime that trains no more (one read back from a
    checkpoint). ``eval_every`` thins the held-out learning curve (the history's held-out
    columns, measured every this many epochs and at each replica's last); it changes no weight,
    so it is no table column, and it enters :meth:`settings` (and so the train job's params) only
    where it is not 1, so main's params stay as they were. ``beta1``, ``beta2`` and ``eps`` are
    AdamW's (no defaults here: the schema's ``training`` holds them).
    """

    name: str
    batch_size: int
    lr: float
    max_epochs: int
    weight_decay: float
    dropout: float
    early_stopping: bool
    stop_at_fit: bool
    ridge: float  # the ridge penalty of a closed-form readout (random features only)
    beta1: float
    beta2: float
    eps: float
    patience: int | None = None
    val_fraction: float | None = None
    log_every: int | None = dataclasses.field(default=None, repr=False, compare=False)
    eval_every: int = 1

    @classmethod
    def from_config(
        cls, name: str, regime: Mapping[str, Any], training: Mapping[str, Any]
    ) -> Regime:
        settings = {k: training[k] for k in TRAINING_KEYS}
        settings.update(regime)
        if settings.get("early_stopping"):
            settings.update({k: training[k] for k in EARLY_STOPPING_KEYS})
        if training["eval_every"] != 1:
            settings["eval_every"] = training["eval_every"]
        return cls.from_settings(name, settings, log_every=training["log_every"])

    @classmethod
    def from_settings(
        cls, name: str, settings: Mapping[str, Any], log_every: int | None = None
    ) -> Regime:
        """The regime whose :meth:`settings` are ``settings``; an unknown key is an error.
        A regime that trains needs ``log_every`` (``training.log_every``)."""
        try:
            return cls(name=name, log_every=log_every, **settings)
        except TypeError as e:
            raise MemlabInputError(
                f"regime {name!r}: {e} (settings {dict(settings)}); the keys are "
                f"{', '.join(REGIME_COLUMNS)}, see config/README.md."
            ) from None

    def settings(self) -> dict[str, Any]:
        """The keys that shape the run (what the train rule's params carry)."""
        values = {c: getattr(self, c) for c in REGIME_COLUMNS}
        if self.eval_every != 1:
            values["eval_every"] = self.eval_every
        return {k: v for k, v in values.items() if v is not None}

    def columns(self) -> dict[str, Any]:
        """Table columns: every setting, 0 where it does not apply (no early stopping)."""
        values = {c: getattr(self, c) for c in REGIME_COLUMNS}
        return {k: 0 if v is None else v for k, v in values.items()}

    @property
    def regularized(self) -> bool:
        return self.weight_decay > 0 or self.dropout > 0 or self.early_stopping or self.ridge > 0

    def conflicts(self, variant: Variant) -> list[str]:
        """The settings of this regime that ``variant``'s training cannot honour."""
        if variant.solved:
            used = {"weight_decay": 0, "dropout": 0, "early_stopping": False}
        else:
            used = {"ridge": 0}
        return [k for k, unset in used.items() if getattr(self, k) != unset]


REGIME_COLUMNS = tuple(
    f.name for f in dataclasses.fields(Regime) if f.name not in ("name", "log_every", "eval_every")
)
# Columns every per-run table starts with: the run's identity, then its settings as values (0
# where a setting does not apply to the run's model or regime).
# `shots`: examples per class of a few-shot (class-stratified) subset, 0 for a random one.
# `memory`: a memory network's memory at evaluation, "on" or "off" (its metrics have both; its
# per-example tables are "on"), "" for the kinds without one.
IDENTITY_COLUMNS = (
    "dataset",
    "label_noise",
    "size",
    "shots",
    "model",
    "model_name",
    "kind",
    "memory",
)
RUN_COLUMNS = (
    *IDENTITY_COLUMNS,
    "width",
    "k",
    "regime",
    *(c for c in VARIANT_COLUMNS if c not in ("width", "k")),
    *REGIME_COLUMNS,
)
# The columns that tell runs apart: the parts of a run's path, and a memory network's memory at
# evaluation (its metrics with the memory off are told apart as if from another run).
RUN_KEYS = ("dataset", "label_noise", "size", "model", "regime", "memory")
_NO_REGIME = dict.fromkeys(REGIME_COLUMNS, 0) | {"early_stopping": False, "stop_at_fit": False}


def noise_label(noise: float) -> str:
    """Wildcard form of a noise rate: 0 -> '0', 0.2 -> '0.2'."""
    return f"{float(noise):g}"


@dataclass(frozen=True)
class Block:
    """Replicas ``start .. stop - 1`` of a run: the unit of work of the train and evaluate jobs.

    A block's subsets and seeds depend on the study seed, the size and its replica range only
    (:func:`memlab.data.datasets.block_subsets`), so adding replicas adds blocks and changes none.
    """

    index: int
    start: int
    stop: int

    @property
    def replicas(self) -> range:
        return range(self.start, self.stop)

    def spec(self) -> list[int]:
        """What the block's jobs are given (their params): the replica range [start, stop)."""
        return [self.start, self.stop]


def replica_blocks(replicas: int, per_job: int) -> tuple[Block, ...]:
    """Replicas 0 .. replicas - 1 in blocks of ``per_job`` (the last one may be smaller)."""
    starts = range(0, replicas, per_job)
    return tuple(Block(i, s, min(s + per_job, replicas)) for i, s in enumerate(starts))


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset and its slice of the grid (top-level settings unless its `grid` overrides)."""

    name: str
    spec: dict[str, Any]  # what prepare needs: the dataset spec without `grid`
    n: int
    test_fraction: float
    n_pool: int
    image_shape: tuple[int, int] | None
    token_shape: tuple[int, int] | None
    sizes: tuple[int, ...]
    label_noise: tuple[float, ...]
    replicas: int
    replicas_per_job: int
    models: tuple[str, ...]  # model names (config keys), not variant ids
    regimes: tuple[str, ...]
    # (size, examples per class) of the sizes given per class (few-shot), in size order.
    per_class: tuple[tuple[int, int], ...] = ()

    def shots(self, size: int) -> int:
        """Examples per class of a few-shot size; 0 for a random subset of ``size``."""
        return dict(self.per_class).get(size, 0)

    @functools.cached_property
    def blocks(self) -> tuple[Block, ...]:
        # Cached: every block job's params look their block up here (Study.block).
        return replica_blocks(self.replicas, self.replicas_per_job)

    @property
    def scores_possible(self) -> bool:
        """Some size lets every example be both in and out of a subset (Feldman-Zhang)."""
        return self.replicas >= 2 and any(
            s < self.n_pool and self.replicas * s >= self.n_pool for s in self.sizes
        )

    def scores_powered(self, gates: PowerGates) -> bool:
        """Some size's balanced design holds every example in and out of enough replicas."""
        return any(planned_scores_powered(gates, self.replicas, s, self.n_pool) for s in self.sizes)

    def attacks_powered(self, gates: PowerGates) -> bool:
        """Some run has a membership design and enough shadow models."""
        return self.scores_possible and gates.attacks_powered(self.replicas)


@dataclass(frozen=True)
class Run:
    """All replicas of one (dataset, noise, size, model variant, regime), in blocks."""

    dataset: str
    noise: str  # the wildcard form, see noise_label
    size: int
    variant: Variant
    regime: Regime | None  # None: a model that does not train
    blocks: tuple[Block, ...] = ()
    shots: int = 0  # examples per class of a few-shot subset (DatasetPlan.shots)
    root: str = RUNS_DIR  # SEQUENCE_RUNS_DIR for a language model's run on a text dataset

    @property
    def model(self) -> str:
        return self.variant.id

    @property
    def regime_name(self) -> str:
        return self.regime.name if self.regime else MEMORY_REGIME

    def wildcards(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "noise": self.noise,
            "size": self.size,
            "model": self.model,
            "regime": self.regime_name,
        }

    @property
    def path(self) -> str:
        """Where its files live under RUNS_DIR."""
        return RUN_PATTERN.format(**self.wildcards())

    def block_path(self, block: Block) -> str:
        """Where a block's files live under RUNS_DIR (its logs and benchmarks are named alike)."""
        return BLOCK_PATTERN.format(**self.wildcards(), block=block.index)

    def file(self, name: str, block: Block) -> str:
        """A file of one of the run's blocks."""
        return f"{self.root}/{self.block_path(block)}/{name}"

    def files(self, name: str) -> list[str]:
        """The file ``name`` of every block, in replica order."""
        return [self.file(name, b) for b in self.blocks]

    def columns(self) -> dict[str, Any]:
        """The run's columns in every table (RUN_COLUMNS, in that order)."""
        values = {
            "dataset": self.dataset,
            "label_noise": float(self.noise),
            "size": self.size,
            "shots": self.shots,
            "model": self.model,
            "model_name": self.variant.name,
            "kind": self.variant.kind,
            "memory": "on" if self.variant.remembers else "",
            "regime": self.regime_name,
            **self.variant.columns(),
            **(self.regime.columns() if self.regime else _NO_REGIME),
        }
        return {c: values[c] for c in RUN_COLUMNS}


# The removal experiment (memlab.analysis.removal): its second-stage runs live under REMOVAL_DIR,
# below the path of the first-stage run whose scores chose what they leave out.
REMOVAL_DIR = "results/removal"
REMOVAL_ARMS = ("none", "top_memorized", "random")
REMOVAL_PATTERN = RUN_PATTERN + "/{arm}-k{k}"
REMOVAL_BLOCK_PATTERN = REMOVAL_PATTERN + "/block{block}"


@dataclass(frozen=True)
class Removal:
    """One arm and k of the removal experiment: replicas trained on the whole pool of ``run``'s
    dataset less k examples chosen by the arm from ``run``'s scores."""

    run: Run  # the first stage
    arm: str
    k: int
    blocks: tuple[Block, ...]

    def wildcards(self) -> dict[str, Any]:
        return {**self.run.wildcards(), "arm": self.arm, "k": self.k}

    @property
    def path(self) -> str:
        """Where its files live under REMOVAL_DIR: below its first stage's run path."""
        return REMOVAL_PATTERN.format(**self.wildcards())

    def files(self, name: str) -> list[str]:
        """The file ``name`` of every block, in replica order."""
        blocks = (
            REMOVAL_BLOCK_PATTERN.format(**self.wildcards(), block=b.index) for b in self.blocks
        )
        return [f"{REMOVAL_DIR}/{block}/{name}" for block in blocks]

    def spec(self) -> dict[str, Any]:
        """What the removal table needs to know of it (memlab.analysis.removal.removal_table)."""
        return {
            "first_stage": self.run.path,
            "arm": self.arm,
            "k": self.k,
            "columns": self.run.columns(),
        }


def fill(pattern: str, wildcards: Mapping[str, Any]) -> str:
    """``pattern`` (RUN_PATTERN, REMOVAL_PATTERN...) with its fields from ``wildcards``, which may
    hold more (a job's wildcards: Snakemake's, or a dict)."""
    fields = (f for _, f, _, _ in string.Formatter().parse(pattern) if f)
    return pattern.format(**{f: wildcards[f] for f in fields})


def run_path_of(file: str | Path) -> str:
    """The run path of a file under RUNS_DIR or SEQUENCE_RUNS_DIR (inverse of :meth:`Run.file`)."""
    path = Path(file).as_posix()
    for root in (RUNS_DIR, SEQUENCE_RUNS_DIR):
        path = path.removeprefix(f"{root}/")
    parts = path.split("/")
    return "/".join(parts[: RUN_PATTERN.count("/") + 1])


@dataclass(frozen=True)
class Study:
    datasets: dict[str, DatasetPlan]
    variants: dict[str, Variant]
    regimes: dict[str, Regime]
    runs: tuple[Run, ...]
    notes: tuple[str, ...]
    # analysis.power: which figures the study can support.
    power: PowerGates = dataclasses.field(default_factory=PowerGates)
    removals: tuple[Removal, ...] = ()
    # analysis.influence.enabled: whether the study asks the train->test influence question.
    influence: bool = True
    # Text datasets and the language models' runs on them (memlab.data.sequences).
    texts: dict[str, DatasetPlan] = dataclasses.field(default_factory=dict)
    sequence_runs: tuple[Run, ...] = ()
    by_path: dict[str, Run] = dataclasses.field(init=False, repr=False, compare=False)
    removal_by_path: dict[str, Removal] = dataclasses.field(init=False, repr=False, compare=False)
    sequence_by_path: dict[str, Run] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_path", {r.path: r for r in self.runs})
        object.__setattr__(self, "removal_by_path", {r.path: r for r in self.removals})
        object.__setattr__(self, "sequence_by_path", {r.path: r for r in self.sequence_runs})

    def sequence_run(self, wildcards: Mapping[str, Any]) -> Run:
        """The sequence run of a job's wildcards (dataset, noise, size, model, regime)."""
        return self.sequence_by_path[fill(RUN_PATTERN, wildcards)]

    def text_block(self, wildcards: Mapping[str, Any]) -> Block:
        """The replica block of a sequence job's wildcards (dataset, block)."""
        return self.texts[wildcards["dataset"]].blocks[int(wildcards["block"])]

    def run(self, wildcards: Mapping[str, Any]) -> Run:
        """The run of a job's wildcards (dataset, noise, size, model, regime)."""
        return self.by_path[fill(RUN_PATTERN, wildcards)]

    def block(self, wildcards: Mapping[str, Any]) -> Block:
        """The replica block of a job's wildcards (dataset, block)."""
        return self.datasets[wildcards["dataset"]].blocks[int(wildcards["block"])]

    def removal(self, wildcards: Mapping[str, Any]) -> Removal:
        """The removal arm of a job's wildcards (a run's, arm and k)."""
        return self.removal_by_path[fill(REMOVAL_PATTERN, wildcards)]

    @property
    def first_stages(self) -> list[Run]:
        """The runs whose scores choose what the removal experiment leaves out."""
        return list({r.run.path: r.run for r in self.removals}.values())


def with_run(frame: Any, run: Mapping[str, Any]) -> Any:
    """Prefix a per-run table with the run's columns (``Run.columns()``); a run column the frame
    has already (a memory network's ``memory``, on and off) keeps the frame's values."""
    import pandas as pd

    coords = {k: [run[k]] * len(frame) for k in RUN_COLUMNS if k not in frame.columns}
    out = pd.concat([pd.DataFrame(coords, index=frame.index), frame], axis=1)
    return out[_run_first(frame.columns)]


def with_run_columns(columns: Mapping[str, np.ndarray], run: Mapping[str, Any]) -> Columns:
    """:func:`with_run` of a table as columns (:mod:`memlab.columnar`): the same columns, order
    and dtypes, without pandas (the train and evaluate jobs)."""
    n = len(next(iter(columns.values())))
    coords = {k: constant(run[k], n) for k in RUN_COLUMNS if k not in columns}
    out = coords | dict(columns)
    return {c: out[c] for c in _run_first(columns)}


def _run_first(names: Any) -> list[str]:
    """The run's columns, then the table's own."""
    return [*RUN_COLUMNS, *(c for c in names if c not in RUN_COLUMNS)]


# The settings that regularize (a regime without any of them is a baseline), and those a study
# can sweep by value (the x axis of the regularization figure).
REGULARIZERS = ("weight_decay", "dropout", "early_stopping", "ridge")
STRENGTHS = ("weight_decay", "dropout")


def unregularized(frame: Any) -> Any:
    """Rows of trained runs with no weight decay, dropout, early stopping or ridge (the
    baselines)."""
    from memlab.plan.kinds import trained

    return trained(frame["kind"]) & _only(frame, None)


def _only(frame: Any, setting: str | None) -> Any:
    """Rows whose regularizers other than ``setting`` are all off."""
    off = True
    for k in REGULARIZERS:
        if k != setting:
            off = off & ~frame[k].astype(bool)
    return off


def strength_sweeps(frame: Any) -> dict[str, Any]:
    """Per regularizer of STRENGTHS that the rows sweep alone (two or more values, the other
    regularizers off, 0 counting as a value): the mask of those rows."""
    sweeps = {}
    for setting in STRENGTHS:
        alone = _only(frame, setting)
        if len(set(frame[setting][alone])) >= 2:
            sweeps[setting] = alone
    return sweeps


# --------------------------------------------------------------------------- planning


def _grid_names(grid: Mapping[str, Any], key: str, known: Mapping[str, Any], name: str) -> tuple:
    chosen = grid.get(key, list(known))
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise MemlabInputError(
            f"config: datasets.{name}.grid.{key} names {', '.join(map(repr, unknown))}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not defined under `{key}`; defined: "
            f"{', '.join(known)}."
        )
    return tuple(chosen)


@functools.cache
def _pool_classes(spec: str, test_fraction: float, seed: int, root: Any, name: str) -> tuple:
    """Pool examples per class, from the split built as rule prepare builds it: a long-tailed
    pool's size shapes the grid, a few-shot size must fit every class, and a long tail its
    clusters cannot satisfy must fail before any job runs. (Costs a scikit-learn import, plus
    a k-means per class on long-tailed data: about 1.5 s, once per process.)"""
    from memlab.data.long_tail import split_indices

    ds, pool, _, _ = split_indices(json.loads(spec), test_fraction, seed, root, name)
    return tuple(int(c) for c in np.bincount(ds.y[pool], minlength=ds.n_classes))


def _few_shot_size(per_class: int, classes: tuple, key: str) -> int:
    """The subset size of ``per_class`` examples of every class; it must fit the smallest."""
    least = min(classes)
    if per_class > least:
        c = classes.index(least)
        raise MemlabInputError(
            f"`{key}`: per_class {per_class} is more than class {c} has in the training pool "
            f"({least} examples); use at most {least}."
        )
    return per_class * len(classes)


def plan_dataset(
    name: str, entry: Mapping[str, Any], config: Mapping[str, Any], root: Any
) -> DatasetPlan:
    """A dataset's slice of the grid; data-dependent mistakes (a size above the pool, a bad
    data file) raise MemlabInputError before any job runs."""
    spec = {k: v for k, v in entry.items() if k != "grid"}
    check_canaries(spec, name)  # before any job: a bad key, or an option it cannot go with
    grid = entry.get("grid", {})
    n_examples, image_shape = data.dataset_shape(spec, root, name=name)
    test_fraction = float(grid.get("test_fraction", config["test_fraction"]))
    n_pool = data.pool_size(n_examples, test_fraction)
    sizes = grid.get("sizes", config["sizes"])
    few_shot = any(isinstance(s, Mapping) for s in sizes)
    if "long_tail" in spec or few_shot:
        key = json.dumps(spec, sort_keys=True)
        classes = _pool_classes(key, test_fraction, config["seed"], root, name)
        n_pool = sum(classes)
    where = "sizes" if "sizes" not in grid else f"datasets.{name}.grid.sizes"
    resolved, per_class = [], {}
    for i, s in enumerate(sizes):
        key = f"{where}[{i}] (dataset '{name}')"
        if isinstance(s, Mapping):
            size = _few_shot_size(s["per_class"], classes, key)
        else:
            size = data.resolve_size(s, n_pool, key=key)
        if size in resolved and (size in per_class or isinstance(s, Mapping)):
            raise MemlabInputError(
                f"`{key}`: size {size} is given twice (a per-class size counts per_class "
                "examples of every class); drop one."
            )
        if isinstance(s, Mapping):
            per_class[size] = s["per_class"]
        resolved.append(size)
    return DatasetPlan(
        name,
        spec,
        n_examples,
        test_fraction,
        n_pool,
        image_shape,
        data.token_shape(spec, name),
        tuple(sorted(set(resolved))),
        tuple(grid.get("label_noise", config["label_noise"])),
        int(grid.get("replicas", config["replicas"])),
        int(grid.get("replicas_per_job", config["replicas_per_job"])),
        _grid_names(grid, "models", config["models"], name),
        _grid_names(grid, "regimes", config["regimes"], name),
        tuple(sorted(per_class.items())),
    )


def _incompatible(dataset: str, variant: Variant, regime: Regime | None) -> str | None:
    """Why ``variant`` cannot train in ``regime`` (a note: the run is skipped), or None."""
    if regime is None or not (conflicts := regime.conflicts(variant)):
        return None
    how = "is solved in closed form" if variant.solved else "trains by gradient steps"
    fix = "ridge" if variant.solved else "weight_decay"
    return (
        f"run {variant.id}/{regime.name} skipped on dataset '{dataset}': model kind "
        f"'{variant.kind}' {how} and cannot use {', '.join(conflicts)} (regularize it with {fix})."
    )


def _check_tokens(variant: Variant, ds: DatasetPlan) -> None:
    """An embedding on data without tokens is a config mistake (not skipped as a CNN on tabular
    data is): the model exists only for token data, so running it elsewhere was never meant."""
    if variant.needs_tokens and ds.token_shape is None:
        raise MemlabInputError(
            f"config: model {variant.id} has an embedding, which needs token inputs, but dataset "
            f"'{ds.name}' (kind '{ds.spec['kind']}') has none (only modular_addition has); "
            f"leave `{variant.name}` out of datasets.{ds.name}.grid.models or drop its "
            "`embedding`."
        )


def _check_memory(variant: Variant, ds: DatasetPlan, size: int, regime: Regime | None) -> None:
    """A memory network trains leave-one-out on its training examples: the memory they make
    must leave every example something to read (memlab.engine.memory_net)."""
    if not variant.remembers or regime is None:
        return
    held = 0
    if regime.early_stopping:
        assert regime.val_fraction is not None  # set wherever a regime stops early
        held = round(regime.val_fraction * size)
    problem = variant.memory_problem(size - held, ds.shots(size))
    if problem:
        raise MemlabInputError(
            f"config: model {variant.id} (kind '{variant.kind}') cannot train on dataset "
            f"'{ds.name}' at size {size} in regime '{regime.name}': {problem}."
        )


def _dataset_runs(
    ds: DatasetPlan, variants: Mapping[str, Variant], regimes: Mapping[str, Regime], notes: list
) -> list[Run]:
    runs = []
    for noise in ds.label_noise:
        for size in ds.sizes:
            for variant in variants.values():
                if variant.name not in ds.models:
                    continue
                _check_tokens(variant, ds)
                if variant.sequences:
                    note = (
                        f"model {variant.id} skipped on dataset '{ds.name}': model kind "
                        f"'{variant.kind}' is a language model; it trains on text datasets only."
                    )
                    notes += [] if note in notes else [note]
                    continue
                if variant.needs_images and ds.image_shape is None:
                    note = (
                        f"model {variant.id} skipped on dataset '{ds.name}': model kind "
                        f"'{variant.kind}' needs images."
                    )
                    notes += [] if note in notes else [note]
                    continue
                chosen = [regimes[r] for r in ds.regimes] if variant.trains else [None]
                for regime in chosen:
                    skip = _incompatible(ds.name, variant, regime)
                    if skip:
                        notes += [] if skip in notes else [skip]
                        continue
                    _check_memory(variant, ds, size, regime)
                    noise_id = noise_label(noise)
                    shots = ds.shots(size)
                    runs.append(Run(ds.name, noise_id, size, variant, regime, ds.blocks, shots))
    return runs


AGREEMENT_KEY = "analysis.agreement_k"


def check_agreement_k(k: Any, n_pool: int, where: str = "the pool") -> int:
    """``k`` as an int; a MemlabInputError naming the key unless 1 <= k <= n_pool - 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MemlabInputError(f"config: {AGREEMENT_KEY} must be an integer >= 1, got {k!r}.")
    if k > n_pool - 1:
        raise MemlabInputError(
            f"config: {AGREEMENT_KEY} = {k} neighbours, but {where} has {n_pool} examples "
            f"(at most {n_pool - 1} other examples); set {AGREEMENT_KEY} to at most "
            f"{max(n_pool - 1, 1)}."
        )
    return int(k)


def plan_study(config: Mapping[str, Any], root: str | Path = ".") -> Study:
    """Resolve the study grid of a schema-validated config (defaults filled in)."""
    variants = expand_models(config["models"])
    regimes = {
        name: Regime.from_config(name, regime, config["training"])
        for name, regime in config["regimes"].items()
    }
    texts = {
        name: plan_text(name, entry, config, root)
        for name, entry in config["datasets"].items()
        if entry["kind"] == "text"
    }
    datasets = {
        name: plan_dataset(name, entry, config, root)
        for name, entry in config["datasets"].items()
        if name not in texts
    }
    agreement_k = config.get("analysis", {}).get("agreement_k")
    if agreement_k is not None:
        for ds in datasets.values():  # the datasets whose runs get per-example scores
            if ds.scores_possible:
                check_agreement_k(agreement_k, ds.n_pool, f"the pool of dataset '{ds.name}'")
    notes: list[str] = []
    runs = [r for ds in datasets.values() for r in _dataset_runs(ds, variants, regimes, notes)]
    sequence_runs = [r for ds in texts.values() for r in _text_runs(ds, variants, regimes, notes)]
    if not runs and not sequence_runs:
        raise MemlabInputError(
            "config: the study has no runs (every model was skipped); add an mlp or knn model "
            "(or, for a text dataset, a gru model)."
        )
    gates = PowerGates.from_config(config)
    influence = config.get("analysis", {}).get("influence", {}).get("enabled", True)
    removals = plan_removals(config.get("removal", {}), datasets, runs, gates, influence)
    return Study(
        datasets, variants, regimes, tuple(runs), tuple(notes), gates, removals, influence,
        texts, tuple(sequence_runs),
    )  # fmt: skip


def plan_text(
    name: str, entry: Mapping[str, Any], config: Mapping[str, Any], root: Any
) -> DatasetPlan:
    """A text dataset's slice of the grid: every replica trains on half of the documents
    (complementary pairs, memlab.data.sequences), so `sizes` and `label_noise` do not apply."""
    spec = {k: v for k, v in entry.items() if k != "grid"}
    grid = entry.get("grid", {})
    test_fraction = float(grid.get("test_fraction", config["test_fraction"]))
    n_pool = _text_pool(json.dumps(spec, sort_keys=True), name, test_fraction, root)
    for key, allowed in (("sizes", [0.5]), ("label_noise", [0.0])):
        if key in grid and list(grid[key]) != allowed:
            raise MemlabInputError(
                f"config: datasets.{name}.grid.{key} is {grid[key]}; a text dataset trains every "
                f"replica on half its documents without label noise: remove it (or use {allowed})."
            )
    replicas = int(grid.get("replicas", config["replicas"]))
    if replicas < 4 or replicas % 2:
        raise MemlabInputError(
            f"config: text dataset '{name}' has {replicas} replicas; its subsets come in "
            "complementary pairs and counterfactual memorization needs two models with and two "
            "without every document: use an even number >= 4 (grid.replicas)."
        )
    return DatasetPlan(
        name,
        spec,
        n_pool,
        test_fraction,
        n_pool,
        None,
        None,
        (n_pool // 2,),
        (0.0,),
        replicas,
        int(grid.get("replicas_per_job", config["replicas_per_job"])),
        _grid_names(grid, "models", config["models"], name),
        _grid_names(grid, "regimes", config["regimes"], name),
    )


@functools.cache
def _text_pool(spec: str, name: str, test_fraction: float, root: Any) -> int:
    """Documents in a text dataset's pool (generated or read as prepare_text does: about 0.05 s
    for the default corpus, once per process); a bad file fails before any job runs."""
    from memlab.data import sequences

    docs = sequences.documents(json.loads(spec), name, test_fraction, root)
    return sequences.pool_size(docs)


def _text_runs(
    ds: DatasetPlan, variants: Mapping[str, Variant], regimes: Mapping[str, Regime], notes: list
) -> list[Run]:
    runs = []
    for variant in variants.values():
        if variant.name not in ds.models:
            continue
        if not variant.sequences:
            note = (
                f"model {variant.id} skipped on dataset '{ds.name}': it is text, which only "
                "language models (kind gru) train on."
            )
            notes += [] if note in notes else [note]
            continue
        for regime in (regimes[r] for r in ds.regimes):
            run = Run(ds.name, noise_label(0.0), ds.sizes[0], variant, regime, ds.blocks)
            runs.append(dataclasses.replace(run, root=SEQUENCE_RUNS_DIR))
    return runs


def plan_removals(
    spec: Mapping[str, Any],
    datasets: Mapping[str, DatasetPlan],
    runs: list[Run],
    gates: PowerGates,
    influence: bool = True,
) -> tuple[Removal, ...]:
    """The removal experiment's second stage (``removal`` in the config; none without ``k``):
    for every first-stage run (a model of ``removal.models`` in a regime of ``removal.regimes``
    whose subset design gives powered scores), the baseline and both arms at every k."""
    ks = spec.get("k", [])
    if not ks:
        return ()
    if not influence:
        raise MemlabInputError(
            "config: removal.k is set, but analysis.influence.enabled is false: the removal "
            "experiment removes high-influence examples. Set analysis.influence.enabled: true, "
            "or drop removal.k."
        )

    def chosen(run: Run) -> bool:
        ds = datasets[run.dataset]
        return (
            run.variant.name in spec.get("models", [run.variant.name])
            and (run.regime is None or run.regime.name in spec.get("regimes", [run.regime.name]))
            and planned_scores_powered(gates, ds.replicas, run.size, ds.n_pool)
            # Its arms train on the whole pool: canary groups would be in every replica.
            and not has_canaries(ds.spec)
        )

    firsts = [r for r in runs if chosen(r)]
    if not firsts:
        raise MemlabInputError(
            "config: removal.k is set, but no run can choose what to remove: the first stage "
            "needs a size below the pool and enough replicas for powered memorization scores "
            "(analysis.power.min_in_out), of a model in removal.models and a regime in "
            "removal.regimes."
        )
    out = []
    for run in firsts:
        n_pool = datasets[run.dataset].n_pool
        too_many = [k for k in ks if k >= n_pool]
        if too_many:
            raise MemlabInputError(
                f"config: removal.k {too_many[0]} is larger than the pool of dataset "
                f"'{run.dataset}' ({n_pool} examples) allows; use at most {n_pool - 1}."
            )
        blocks = replica_blocks(spec["replicas"], datasets[run.dataset].replicas_per_job)
        arms = [("none", 0)] + [(arm, k) for k in ks for arm in REMOVAL_ARMS[1:]]
        out += [Removal(run, arm, k, blocks) for arm, k in arms]
    return tuple(out)
