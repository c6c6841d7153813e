"""memlab benchmarks: training throughput, end-to-end studies, workflow overhead, the bank,
train->test influence, the memory network, the CNN, the per-job fixed cost.

    ./run.sh bench                      # every section but bank
    ./run.sh bench train                # the MLP engine vs textbook, scikit-learn, vmap ensemble
    ./run.sh bench train --rounds 5     # one section, more rounds
    ./run.sh bench e2e --default-study  # also the default study (about 12 minutes)
    ./run.sh bench bank                 # config/bank.yaml from scratch, analysis vs replicas
    ./run.sh bench influence            # a 1024-model bank's influence matrix: GEMM vs loop
    ./run.sh bench fixed_cost           # each rule script's imports against python's floors
    ./run.sh bench memory_net           # the memory network vs an MLP by subset size
    ./run.sh bench cnn                  # the stacked CNN vs the textbook CNN loop
    ./run.sh bench estimators           # what the cheap memorization estimators add to a job
    ./run.sh bench sequence             # the stacked GRU language model vs the textbook loop

Prints a table per section and writes ``results/benchmarks/<section>.json`` (outputs, never
committed). This machine is shared and drifts by 20% or more between runs, so every comparison
runs side by side in one process, variants alternating within each round, after a warm-up, and
reports the median over rounds and ratios between variants measured in the same rounds. Every
process uses one thread. The machine load (/proc/loadavg) is recorded before and after.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's library, not an installed one

sys.path.insert(0, str(ROOT / "tests"))  # the tests' helpers: copy the workflow, find snakemake

from conftest import (  # noqa: E402
    SNAKEMAKE,
    copy_workflow,
    fresh_imports,
    rule_scripts,
    script_imports,
    train_regime,
)

from memlab.data import datasets as data  # noqa: E402
from memlab.engine import runs  # noqa: E402
from memlab.io import atomic_path  # noqa: E402
from memlab.plan.kinds import MLP  # noqa: E402
from memlab.plan.study import Regime  # noqa: E402
from memlab.rulejob import configure_threads  # noqa: E402

WIDTHS = (16, 64, 128, 256, 512, 1024)
DEPTH = 2  # MLP with two hidden layers


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(section: str, payload: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / f"{section}.json"
    payload = {
        "section": section,
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **payload,
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    return path


def table(rows: list[dict[str, Any]], cols: list[tuple[str, str, str]]) -> str:
    """Plain-text table: cols are (key, header, format)."""
    cells = [[h for _, h, _ in cols]]
    for r in rows:
        cells.append(
            ["" if r.get(k) is None else (format(r[k], f) if f else str(r[k])) for k, _, f in cols]
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def alternate(
    variants: dict[str, Callable[[], float]], rounds: int, warm_up: bool = True
) -> dict[str, list[float]]:
    """Run each variant once to warm up, then ``rounds`` rounds alternating the variants (the
    order rotates each round); return each variant's measured values (higher is better)."""
    for f in variants.values():
        if warm_up:
            f()
    names = list(variants)
    out: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        for n in names[i % len(names) :] + names[: i % len(names)]:
            out[n].append(variants[n]())
    return out


# ---------------------------------------------------------------------------------------- gemm


def gemm_peak(rounds: int = 5, n: int = 2048) -> float:
    """Single-thread fp32 GEMM throughput (GFLOP/s) of a large square matmul, median of rounds."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    vals = []
    for _ in range(rounds):
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        vals.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(vals)


def section_gemm(args: argparse.Namespace) -> dict[str, Any]:
    before = loadavg()
    peak = gemm_peak(args.rounds + 2)
    print(
        f"single-thread fp32 GEMM peak (2048^3 matmul, median of {args.rounds + 2}): "
        f"{peak:.1f} GFLOP/s"
    )
    return {"peak_gflops": peak, "loadavg_before": before, "loadavg_after": loadavg()}


# --------------------------------------------------------------------------------------- train


def digits_split() -> data.Split:
    ds = data.load_dataset({"kind": "digits"})
    return data.make_split(ds, *data.split_pool_test(ds.y, 0.25, 0))


def params_per_model(width: int, d_in: int = 64, n_classes: int = 10) -> int:
    dims = [d_in] + [width] * DEPTH + [n_classes]
    return sum(a * b + b for a, b in itertools.pairwise(dims))


def textbook(x: np.ndarray, y: np.ndarray, width: int, batch: int, epochs: int) -> None:
    """The loop from the tutorials: DataLoader over a TensorDataset, nn.Sequential, Adam."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = DataLoader(ds, batch_size=batch, shuffle=True)
    model = nn.Sequential(
        nn.Linear(x.shape[1], width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, 10),
    )
    opt = torch.optim.Adam(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()


def sklearn_mlp(x: np.ndarray, y: np.ndarray, width: int, batch: int, epochs: int) -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(width,) * DEPTH,
        batch_size=batch,
        max_iter=epochs,
        n_iter_no_change=epochs + 1,
        tol=0.0,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    assert clf.n_iter_ == epochs


def _regime(batch: int, epochs: int) -> Regime:
    """The benchmarks' regime: the schema's defaults, lr 1e-3, every epoch trained."""
    return train_regime(
        batch_size=batch, lr=1e-3, max_epochs=epochs, stop_at_fit=False, log_every=10**9
    )


def engine(
    split: data.Split,
    members: np.ndarray,
    width: int,
    batch: int,
    epochs: int,
    reuse: bool = True,
) -> None:
    """memlab's engine as the train rule runs it: all replicas, chunked, per-epoch evaluation.
    ``reuse=False``: a full-batch epoch's evaluation does not lend its forward pass to the next
    step (``memlab.engine.train.Trainer.evaluate_ahead``), as before that reuse existed."""
    from unittest import mock

    from memlab.engine.train import train_stacked

    trains = partial(train_stacked, reuse_forward=reuse)
    with mock.patch.object(runs, "train_stacked", trains):
        runs.train_run(
            split,
            split.y_pool,
            np.zeros(len(split.y_pool), bool),
            members,
            MLP("mlp", width, DEPTH),
            _regime(batch, epochs),
            seed=0,
            log=lambda s: None,
        )


def engine_steps(
    split: data.Split, members: np.ndarray, width: int, batch: int, epochs: int
) -> None:
    """The engine's training steps alone (stacked model, per-replica batch order, fast step,
    fused AdamW; same chunks) without its per-epoch evaluation and bookkeeping: what the
    evaluation costs is the difference to ``engine``."""
    from memlab.engine.fastpath import fast_step
    from memlab.engine.models import StackedMLP
    from memlab.engine.train import adamw, init_seeds

    x = torch.from_numpy(split.x_pool.astype(np.float32))
    y = torch.from_numpy(split.y_pool.astype(np.int64))
    r = members.shape[0]
    chunk = runs.replicas_per_chunk(MLP("mlp", width, DEPTH), params_per_model(width), r)
    idx = torch.from_numpy(np.stack([np.flatnonzero(m) for m in members]))
    n = idx.shape[1]
    for start in range(0, r, chunk):
        rows = list(range(start, min(start + chunk, r)))
        model = StackedMLP(
            x.shape[1],
            10,
            width=width,
            depth=DEPTH,
            dropout=0.0,
            replica_seeds=init_seeds(0, rows),
        )
        opt = adamw(list(model.parameters()), _regime(batch, epochs))
        step = fast_step(model)
        gens = [torch.Generator().manual_seed(i) for i in rows]
        for _ in range(epochs):
            order = torch.stack([torch.randperm(n, generator=g) for g in gens])
            batches = idx[rows].gather(1, order)
            for s in range(0, n, batch):
                opt.step(step(x, y, batches[:, s : s + batch]))


def vmap_ensemble(
    split: data.Split, members: np.ndarray, width: int, batch: int, epochs: int
) -> None:
    """PyTorch's own recipe for training many small models at once (the "model ensembling"
    tutorial): ``torch.func.stack_module_state`` of R ``nn.Sequential`` MLPs, gradients by
    ``vmap(grad(functional_call))``, one fused Adam over the stacked tensors; each replica draws
    its batches from its own subset, as memlab's do. Training steps only, no evaluation."""
    from torch import nn
    from torch.func import functional_call, grad, stack_module_state, vmap

    def mlp() -> nn.Module:
        dims = [split.x_pool.shape[1]] + [width] * DEPTH
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(width, 10))

    r = members.shape[0]
    params, buffers = stack_module_state([mlp() for _ in range(r)])
    base = mlp().to("meta")

    def loss(p: Any, b: Any, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    grads = vmap(grad(loss))
    opt = torch.optim.Adam(list(params.values()), fused=True)
    x = torch.from_numpy(split.x_pool.astype(np.float32))
    y = torch.from_numpy(split.y_pool.astype(np.int64))
    idx = torch.from_numpy(np.stack([np.flatnonzero(m) for m in members]))
    n = idx.shape[1]
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n) for _ in range(r)])
        batches = idx.gather(1, order)
        for s in range(0, n, batch):
            bi = batches[:, s : s + batch]
            g = grads(params, buffers, x[bi], y[bi])
            for k, p in params.items():
                p.grad = g[k]
            opt.step()


def compare(
    fns: dict[str, Callable[[int], None]],
    models: dict[str, int],
    rounds: int,
    seconds: float,
    min_epochs: int = 1,
) -> dict[str, list[float]]:
    """Model-epochs per second of each variant, ``rounds`` alternating rounds each."""
    # Epochs per measurement: about ``seconds`` from one timed epoch (which is the warm-up), at
    # least ``min_epochs``.
    epochs = {}
    for name, f in fns.items():
        t = time.perf_counter()
        f(1)
        epochs[name] = int(min(200, max(min_epochs, round(seconds / (time.perf_counter() - t)))))

    def measure(name: str) -> float:
        t = time.perf_counter()
        fns[name](epochs[name])
        return models[name] * epochs[name] / (time.perf_counter() - t)

    return alternate({k: partial(measure, k) for k in fns}, rounds, warm_up=False)


def ratio(res: dict[str, list[float]], a: str, b: str) -> float | None:
    """Median over rounds of a/b within each round (same machine state)."""
    if a not in res or b not in res:
        return None
    return statistics.median(x / y for x, y in zip(res[a], res[b], strict=True))


def section_train(args: argparse.Namespace, peak: float) -> dict[str, Any]:
    configure_threads(1)
    before = loadavg()
    split = digits_split()
    n = args.train_size
    members = data.balanced_subsets(len(split.y_pool), n, args.replicas, 0)
    x0 = split.x_pool[members[0]].astype(np.float32)
    y0 = split.y_pool[members[0]].astype(np.int64)
    cases = [(w, 64) for w in args.widths]
    cases += [(w, n) for w in args.widths if w >= 512]  # full batch, where GEMMs can be large
    rows = []
    for width, batch in cases:
        flops_per_model_epoch = 6 * params_per_model(width) * n
        fns = {
            "textbook": lambda e, w=width, b=batch: textbook(x0, y0, w, b, e),
            "sklearn": lambda e, w=width, b=batch: sklearn_mlp(x0, y0, w, b, e),
            "memlab": lambda e, w=width, b=batch: engine(split, members, w, b, e),
            "noreuse": lambda e, w=width, b=batch: engine(split, members, w, b, e, reuse=False),
            "steps": lambda e, w=width, b=batch: engine_steps(split, members, w, b, e),
            "vmap": lambda e, w=width, b=batch: vmap_ensemble(split, members, w, b, e),
        }
        models = {"textbook": 1, "sklearn": 1, "memlab": args.replicas, "steps": args.replicas}
        models["vmap"] = models["noreuse"] = args.replicas
        if batch != 64 and not args.sklearn_full_batch:
            del fns["sklearn"]
        if batch < n:  # the reuse is for full batch only: the same code runs
            del fns["noreuse"]
        res = compare(fns, models, args.rounds, args.seconds, args.min_epochs)
        med = {k: statistics.median(v) for k, v in res.items()}
        chunk = runs.replicas_per_chunk(
            MLP("mlp", width, DEPTH), params_per_model(width), args.replicas
        )
        row = {
            "width": width,
            "batch": batch,
            "replicas": args.replicas,
            "stack": chunk,
            **{f"{k}_me_s": v for k, v in med.items()},
            "rounds": res,
            "memlab_vs_textbook": ratio(res, "memlab", "textbook"),
            "noreuse_vs_textbook": ratio(res, "noreuse", "textbook"),
            "memlab_vs_noreuse": ratio(res, "memlab", "noreuse"),
            "memlab_vs_sklearn": ratio(res, "memlab", "sklearn"),
            "steps_vs_textbook": ratio(res, "steps", "textbook"),
            "sklearn_vs_textbook": ratio(res, "sklearn", "textbook"),
            "memlab_vs_vmap": ratio(res, "memlab", "vmap"),
            "steps_vs_vmap": ratio(res, "steps", "vmap"),
            **{f"{k}_peak": v * flops_per_model_epoch / 1e9 / peak for k, v in med.items()},
        }
        rows.append(row)
        print(
            f"  width {width:5d} batch {batch:5d}: textbook {med['textbook']:8.2f}  "
            f"memlab {med['memlab']:8.2f} model-epochs/s  x{row['memlab_vs_textbook']:.2f}",
            flush=True,
        )
    cols = [
        ("width", "width", ""),
        ("batch", "batch", ""),
        ("stack", "R/stack", ""),
        ("textbook_me_s", "textbook me/s", ".2f"),
        ("sklearn_me_s", "sklearn me/s", ".2f"),
        ("memlab_me_s", "memlab me/s", ".2f"),
        ("memlab_vs_textbook", "memlab/textbook", ".2f"),
        ("memlab_vs_sklearn", "memlab/sklearn", ".2f"),
        ("noreuse_vs_textbook", "no-reuse/textbook", ".2f"),
        ("memlab_vs_noreuse", "memlab/no-reuse", ".2f"),
        ("steps_me_s", "steps me/s", ".2f"),
        ("steps_vs_textbook", "steps/textbook", ".2f"),
        ("vmap_me_s", "vmap me/s", ".2f"),
        ("memlab_vs_vmap", "memlab/vmap", ".2f"),
        ("steps_vs_vmap", "steps/vmap", ".2f"),
        ("textbook_peak", "textbook %peak", ".1%"),
        ("sklearn_peak", "sklearn %peak", ".1%"),
        ("memlab_peak", "memlab %peak", ".1%"),
        ("noreuse_peak", "no-reuse %peak", ".1%"),
        ("steps_peak", "steps %peak", ".1%"),
    ]
    print(
        f"\nTraining throughput, model-epochs/s (me/s): digits, {n} examples per model, MLP "
        f"{DEPTH}x width, memlab trains {args.replicas} replicas (R/stack: stacked at a time) "
        f"with per-epoch evaluation (steps: its training steps alone; no-reuse: full batch "
        f"without the evaluation's forward lent to the next step); "
        f"median of {args.rounds} alternating rounds; "
        f"%peak: 6*params*samples FLOP/epoch over the {peak:.1f} GFLOP/s GEMM peak"
    )
    print(table(rows, cols))
    return {
        "peak_gflops": peak,
        "train_size": n,
        "rows": rows,
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }


# ------------------------------------------------------------------------------------- snakemake


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    proc = subprocess.run(
        [SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, env=env, timeout=7200
    )
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> int:
    m = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.M)
    return int(m.group(1)) if m else 0


def job_stats(text: str) -> dict[str, int]:
    """Rule -> planned jobs, from the first "Job stats" table of ``snakemake -n`` (no total)."""
    m = re.search(r"^Job stats:\n.*\n-+\s+-+\n((?:\S+\s+\d+\n)+)", text, re.M)
    if m is None:
        raise ValueError(f"no Job stats table in:\n{text[-2000:]}")
    stats = dict((rule, int(n)) for rule, n in (line.split() for line in m.group(1).splitlines()))
    stats.pop("total", None)
    return stats


def _timed_dry_run(workdir: Path, *args: str) -> tuple[float, int]:
    t = time.perf_counter()
    proc = snakemake(workdir, "-n", "--cores", "1", *args)
    return time.perf_counter() - t, planned_jobs(proc)


def dry_run_stats(workdir: Path, *args: str) -> dict[str, int]:
    proc = snakemake(workdir, "-n", "--cores", "1", *args)
    return job_stats(proc.stdout + proc.stderr)


def _grid(cfg: dict[str, Any], n_widths: int) -> dict[str, Any]:
    noise = [0.0, 0.1, 0.2, 0.3, 0.4]
    sizes = [round(0.1 * i, 1) for i in range(1, 11)]
    widths = [8 * (i + 1) for i in range(n_widths)]
    models = {"mlp": {"kind": "mlp", "depth": 2, "widths": widths}}
    # The datasets on the top-level grid, where a grid of their own only picks models (the
    # default study's digits): one with more of a grid (the long-tailed digits, the bank) names
    # models and sizes this grid does not have.
    datasets = {
        k: {key: v for key, v in spec.items() if key != "grid"}
        for k, spec in cfg["datasets"].items()
        if set(spec.get("grid", {})) <= {"models"}
    }
    return {**cfg, "datasets": datasets, "label_noise": noise, "sizes": sizes, "models": models}


def grid_config(target_jobs: int, workdir: Path) -> tuple[dict[str, Any], int]:
    """A study grid (the default study's regimes, 5 noise rates x 10 sizes x n MLP widths) of
    about ``target_jobs`` planned jobs, and its planned job count.

    The jobs per width are counted, not assumed: dry runs (in ``workdir``, a copy of the
    workflow) of one and two widths give the jobs per width and the fixed jobs, whatever the
    study's rules make of a run (train + evaluate, replica blocks, ...); the candidate grid is
    dry-run too and the estimate corrected from it while that changes the width count.
    """
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    path = workdir / "config" / "grid-calibrate.yaml"

    def jobs(n_widths: int) -> int:
        path.write_text(yaml.safe_dump(_grid(cfg, n_widths), sort_keys=False))
        return sum(dry_run_stats(workdir, "--configfile", str(path)).values())

    counts = {1: jobs(1), 2: jobs(2)}
    n = 2
    for _ in range(4):
        # Jobs per width and fixed jobs from the two largest grids counted so far.
        (a, ja), (b, jb) = sorted(counts.items())[-2:]
        per_width = max(1.0, (jb - ja) / (b - a))
        fixed = jb - per_width * b
        n = max(1, round((target_jobs - fixed) / per_width))
        if n in counts:
            break
        counts[n] = jobs(n)
    path.unlink()
    return _grid(cfg, n), counts[n]


# The existing, unfair baseline: as many trivial jobs, all independent (one rule, no edges).
BARE_SNAKEFILE = """\
N = {n}


rule all:
    input:
        expand("out/{{i}}.txt", i=range(N)),


rule job:
    output:
        "out/{{i}}.txt",
    shell:
        "touch {{output}}"
"""


def parse_dag(dot: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Jobs (DOT node id -> rule name) and edges (upstream id, downstream id) from the
    Graphviz output of ``snakemake -n --dag``: nodes ``3[label = "train\\nmodel: ..."]`` (the
    rule name first, then the wildcards), edges ``4 -> 3`` (job 4's output is job 3's input)."""
    jobs = {m[1]: m[2] for m in re.finditer(r'^\s*(\d+)\[label = "(\w+)', dot, re.M)}
    edges = [(m[1], m[2]) for m in re.finditer(r"^\s*(\d+) -> (\d+)\s*$", dot, re.M)]
    if not jobs or any(u not in jobs or d not in jobs for u, d in edges):
        raise ValueError(f"not a snakemake --dag graph:\n{dot[:2000]}")
    return jobs, edges


def _job_paths(jobs: dict[str, str]) -> dict[str, str]:
    """Job id -> its one output in the bare Snakefile, ``out/<rule>/<i>.txt``, where i numbers
    a rule's jobs in the order of their ids."""
    index: dict[str, int] = {}
    out = {}
    for job in sorted(jobs, key=lambda j: int(j) if j.isdigit() else j):
        rule = jobs[job]
        out[job] = f"out/{rule}/{index.setdefault(rule, 0)}.txt"
        index[rule] += 1
    return out


def bare_dag_inputs(jobs: dict[str, str], edges: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The same-shape baseline's input lists: ``"<rule>/<i>"`` -> the outputs of exactly that
    job's upstream jobs, and ``"all"`` -> the targets. The targets are the inputs of the DAG's
    ``all`` job where it has one (a job of rule ``all`` without downstream jobs: the bare
    Snakefile's own ``rule all`` takes its place), else the outputs of every job without
    downstream jobs."""
    paths = _job_paths(jobs)
    upstream: dict[str, list[str]] = {j: [] for j in jobs}
    has_downstream = set()
    for u, d in edges:
        upstream[d].append(paths[u])
        has_downstream.add(u)
    targets = [j for j in jobs if jobs[j] == "all" and j not in has_downstream]
    if len(targets) > 1 or any(jobs[j] == "all" for j in has_downstream):
        raise ValueError("the DAG's rule all must be one job with no downstream job")
    inputs = {
        paths[j].removeprefix("out/").removesuffix(".txt"): sorted(set(upstream[j]))
        for j in jobs
        if j not in targets
    }
    if targets:
        inputs["all"] = sorted(set(upstream[targets[0]]))
    else:
        inputs["all"] = sorted(paths[j] for j in jobs if j not in has_downstream)
    return inputs


BARE_DAG_INPUTS = "inputs.json"


BARE_SCRIPT = "job.py"
BARE_ENV = "environment.yml"


def bare_dag_snakefile(
    jobs: dict[str, str], edges: list[tuple[str, str]], directives: bool = False
) -> str:
    """A Snakefile of the DAG's shape with trivial rules: one rule per rule of the DAG (same
    names), job i of rule R makes ``out/R/{i}.txt`` and its input function returns the outputs
    of exactly that job's upstream jobs, looked up in ``inputs.json`` beside the Snakefile
    (``bare_dag_inputs``); ``rule all`` requests the DAG's targets. No params, no config, no
    library: what planning the same DAG costs Snakemake alone.

    ``directives``: every rule also has a ``log:``, a ``benchmark:``, a ``conda:`` environment
    and a ``script:`` (a trivial one), as the study's rules do. Snakemake does per-job work for
    each (it reads the script and builds the environment spec of every job), so this baseline
    leaves only memlab's own bookkeeping (config, study plan, params, code hash) to the ratio.
    """
    del edges  # the edges are in inputs.json; the Snakefile needs only the rules
    rules = sorted({r for r in jobs.values() if r != "all"})
    lines = [
        "# A bare Snakefile of a study's DAG shape (benchmarks/run.py, bare_dag_snakefile).",
        "import json",
        "",
        f'INPUTS = json.loads(open(workflow.basedir + "/{BARE_DAG_INPUTS}").read())',
        "",
        "",
        "wildcard_constraints:",
        '    i="[0-9]+",',
        "",
        "",
        "rule all:",
        "    input:",
        '        INPUTS["all"],',
    ]
    for rule in rules:
        lines += [
            "",
            "",
            f"rule {rule}:",
            "    input:",
            f'        lambda wc: INPUTS["{rule}/" + wc.i],',
            "    output:",
            f'        "out/{rule}/{{i}}.txt",',
        ]
        if directives:
            lines += [
                "    log:",
                f'        "logs/{rule}/{{i}}.log",',
                "    benchmark:",
                f'        "benchmarks/{rule}/{{i}}.tsv",',
                "    conda:",
                f'        "{BARE_ENV}"',
                "    script:",
                f'        "{BARE_SCRIPT}"',
            ]
        else:
            lines += ["    shell:", '        "touch {output}"']
    return "\n".join(lines) + "\n"


def write_bare_dag(
    dest: Path, jobs: dict[str, str], edges: list[tuple[str, str]], directives: bool = False
) -> Path:
    """The same-shape bare workflow in ``dest``: Snakefile and inputs.json (and, with
    ``directives``, the trivial script and environment its rules name)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "Snakefile").write_text(bare_dag_snakefile(jobs, edges, directives))
    (dest / BARE_DAG_INPUTS).write_text(json.dumps(bare_dag_inputs(jobs, edges)))
    if directives:
        (dest / BARE_SCRIPT).write_text("open(snakemake.output[0], 'w').close()\n")
        (dest / BARE_ENV).write_text("name: bare\ndependencies: [python]\n")
    return dest


def dag_of(workdir: Path, *args: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The jobs and edges Snakemake plans in ``workdir`` (``snakemake -n --dag``)."""
    return parse_dag(snakemake(workdir, "-n", "--dag", "--cores", "1", *args).stdout)


def dag_signature(jobs: dict[str, str], edges: list[tuple[str, str]]) -> dict[str, Any]:
    """What two DAGs of the same shape share, whatever their job ids: the jobs per rule, the
    edges counted per (upstream rule, downstream rule), and the jobs counted per (rule, number of
    upstream jobs, number of downstream jobs)."""
    ups = Counter(d for _, d in edges)
    downs = Counter(u for u, _ in edges)
    return {
        "jobs": Counter(jobs.values()),
        "edges": Counter((jobs[u], jobs[d]) for u, d in edges),
        "degrees": Counter((r, ups[j], downs[j]) for j, r in jobs.items()),
    }


def check_same_shape(
    study_stats: dict[str, int],
    bare_stats: dict[str, int],
    study_dag: tuple[dict[str, str], list[tuple[str, str]]],
    bare_dag: tuple[dict[str, str], list[tuple[str, str]]],
) -> None:
    """Raise unless the bare workflow plans as many jobs per rule as the study (its Job stats)
    and a DAG of the same signature (``dag_signature``)."""
    if study_stats != bare_stats:
        raise RuntimeError(f"jobs per rule differ: study {study_stats}, bare {bare_stats}")
    a, b = dag_signature(*study_dag), dag_signature(*bare_dag)
    for key in a:
        if a[key] != b[key]:
            raise RuntimeError(f"DAG {key} differ: study {dict(a[key])}, bare {dict(b[key])}")


def section_overhead(args: argparse.Namespace) -> dict[str, Any]:
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="memlab-bench-") as tmp:
        study = copy_workflow(Path(tmp) / "study")
        cfg_path = study / "config" / "grid.yaml"
        cfg, _ = grid_config(args.jobs, study)
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        study_args = ("--configfile", str(cfg_path))
        study_stats = dry_run_stats(study, *study_args)
        n_jobs = sum(study_stats.values())
        study_dag = dag_of(study, *study_args)
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / "Snakefile").write_text(BARE_SNAKEFILE.format(n=n_jobs - 1))  # + its all job
        shape = write_bare_dag(Path(tmp) / "shape", *study_dag)
        shape_stats = dry_run_stats(shape)
        check_same_shape(study_stats, shape_stats, study_dag, dag_of(shape))
        rules = write_bare_dag(Path(tmp) / "rules", *study_dag, directives=True)
        check_same_shape(study_stats, dry_run_stats(rules), study_dag, dag_of(rules))
        res = alternate(
            {
                "study": lambda: -_timed_dry_run(study, *study_args)[0],
                "shape": lambda: -_timed_dry_run(shape)[0],
                "rules": lambda: -_timed_dry_run(rules)[0],
                "bare": lambda: -_timed_dry_run(bare)[0],
            },
            args.rounds,
        )
        study_s, shape_s, rules_s, bare_s = (
            [-v for v in res[k]] for k in ("study", "shape", "rules", "bare")
        )
        # One-value edit (one regime's weight decay), then the dry-run plan.
        edits = []
        for i in range(args.rounds):
            cfg["regimes"]["weight_decay"]["weight_decay"] = 2.0 + 0.5 * (i + 1)
            cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            edits.append(_timed_dry_run(study, *study_args)[0])
        _, bare_jobs = _timed_dry_run(bare)
    out = {
        "jobs": n_jobs,
        "jobs_per_rule": study_stats,
        "edges": len(study_dag[1]),
        "shape_jobs": sum(shape_stats.values()),
        "bare_jobs": bare_jobs,
        "study_dry_run_s": statistics.median(study_s),
        "shape_dry_run_s": statistics.median(shape_s),
        "rules_dry_run_s": statistics.median(rules_s),
        "bare_dry_run_s": statistics.median(bare_s),
        "ratio_shape": statistics.median(s / b for s, b in zip(study_s, shape_s, strict=True)),
        "ratio_rules": statistics.median(s / b for s, b in zip(study_s, rules_s, strict=True)),
        "ratio": statistics.median(s / b for s, b in zip(study_s, bare_s, strict=True)),
        "edit_to_plan_s": statistics.median(edits),
        "rounds": {
            "study": study_s,
            "shape": shape_s,
            "rules": rules_s,
            "bare": bare_s,
            "edit": edits,
        },
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }
    print(f"\nWorkflow overhead (snakemake -n, median of {args.rounds} alternating rounds)")
    edges = out["edges"]
    print(
        table(
            [
                {"what": f"study grid ({n_jobs} jobs, {edges} edges)", "s": out["study_dry_run_s"]},
                {
                    "what": f"same-shape bare Snakefile ({out['shape_jobs']} jobs, {edges} edges)",
                    "s": out["shape_dry_run_s"],
                },
                {
                    "what": "same shape, log/benchmark/conda/script directives",
                    "s": out["rules_dry_run_s"],
                },
                {
                    "what": f"bare Snakefile ({bare_jobs} independent jobs)",
                    "s": out["bare_dry_run_s"],
                },
                {"what": "ratio study/same-shape (per round, median)", "s": out["ratio_shape"]},
                {"what": "ratio study/same-shape+directives (median)", "s": out["ratio_rules"]},
                {"what": "ratio study/independent (per round, median)", "s": out["ratio"]},
                {"what": "one-value config edit -> dry-run plan", "s": out["edit_to_plan_s"]},
            ],
            [("what", "what", ""), ("s", "seconds (ratio)", ".2f")],
        )
    )
    return out


# ----------------------------------------------------------------------------------------- e2e


def read_benchmarks(workdir: Path) -> list[dict[str, Any]]:
    """Every job's ``benchmark:`` record (seconds, max RSS in MB) with its rule."""
    import pandas as pd

    recs = []
    for f in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        parts = f.relative_to(workdir / "results" / "benchmarks").parts
        rule = parts[0] if len(parts) > 1 else f.stem  # one-job rules write <rule>.tsv
        row = pd.read_csv(f, sep="\t").iloc[-1]
        recs.append({"rule": rule, "s": float(row["s"]), "max_rss_mb": float(row["max_rss"])})
    return recs


def run_in(work: Path, configfile: str, cores: int) -> dict[str, float]:
    """Run a study in ``work``: wall seconds, CPU seconds of the whole process tree (Snakemake
    and every job) and the largest process's peak RSS."""
    t = time.perf_counter()
    with open(work / "snakemake.out", "w") as out:
        proc = subprocess.Popen(
            [SNAKEMAKE, "--configfile", configfile, "--cores", str(cores)],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        # wait4: this run's own rusage (its tree's CPU time); ru_maxrss is the largest process
        # of its tree (Snakemake or any job), in KB.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{configfile} failed:\n{(work / 'snakemake.out').read_text()}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_process_rss_mb": usage.ru_maxrss / 1024,
    }


def run_study(configfile: str, cores: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="memlab-bench-") as tmp:
        work = copy_workflow(Path(tmp))
        run = run_in(work, configfile, cores)
        wall, peak_process_mb = run["wall_s"], run["peak_process_rss_mb"]
        recs = read_benchmarks(work)
    rules: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        rules.setdefault(r["rule"], []).append(r)
    per_rule = [
        {
            "rule": k,
            "jobs": len(v),
            "total_s": sum(r["s"] for r in v),
            "median_s": statistics.median(r["s"] for r in v),
            "max_s": max(r["s"] for r in v),
            "max_rss_mb": max(r["max_rss_mb"] for r in v),
        }
        for k, v in sorted(rules.items())
    ]
    return {
        "config": configfile,
        "cores": cores,
        "wall_s": wall,
        "jobs": len(recs),
        "peak_job_rss_mb": max((r["max_rss_mb"] for r in recs), default=0.0),
        "peak_process_rss_mb": peak_process_mb,
        "per_rule": per_rule,
    }


def section_e2e(args: argparse.Namespace) -> dict[str, Any]:
    before = loadavg()
    studies = ["config/smoke.yaml"] + (["config/config.yaml"] if args.default_study else [])
    out = {"studies": [], "loadavg_before": before}
    for cfg in studies:
        res = run_study(cfg, args.cores)
        out["studies"].append(res)
        print(
            f"\nEnd to end: {cfg}, --cores {args.cores}: {res['wall_s']:.1f} s wall, {res['jobs']} "
            f"jobs, peak job RSS {res['peak_job_rss_mb']:.0f} MB (largest process of the run, "
            f"Snakemake included: {res['peak_process_rss_mb']:.0f} MB)"
        )
        print(
            table(
                res["per_rule"],
                [
                    ("rule", "rule", ""),
                    ("jobs", "jobs", ""),
                    ("total_s", "total s", ".1f"),
                    ("median_s", "median s", ".2f"),
                    ("max_s", "max s", ".2f"),
                    ("max_rss_mb", "max RSS MB", ".0f"),
                ],
            )
        )
    out["loadavg_after"] = loadavg()
    return out


# ---------------------------------------------------------------------------------------- bank


def _analyze_record(work: Path) -> dict[str, float]:
    row = next(r for r in read_benchmarks(work) if r["rule"] == "analyze")
    return {"analyze_s": row["s"], "analyze_max_rss_mb": row["max_rss_mb"]}


def section_bank(args: argparse.Namespace) -> dict[str, Any]:
    """The large-bank config from scratch (wall, CPU seconds / wall), then the same bank read by
    studies of fewer replicas: their blocks exist, so only the analyses run (analyze-rule time
    and peak memory against the number of replicas)."""
    before = loadavg()
    cfg = yaml.safe_load((ROOT / args.bank_config).read_text())
    sizes = sorted({*args.bank_replicas, cfg["replicas"]})
    rows = []
    with tempfile.TemporaryDirectory(prefix="memlab-bank-") as tmp:
        work = copy_workflow(Path(tmp) / "bank")
        full = run_in(work, args.bank_config, args.cores)
        full |= _analyze_record(work)
        blocks = len(list((work / "results/benchmarks/train").rglob("block*.tsv")))
        for r in sizes:
            if r == cfg["replicas"]:  # the full run's own analysis
                rows.append(
                    {"replicas": r, **{k: full[k] for k in ("analyze_s", "analyze_max_rss_mb")}}
                )
                continue
            path = work / "config" / f"bank-{r}.yaml"
            path.write_text(yaml.safe_dump({**cfg, "replicas": r}))
            run_in(work, str(path.relative_to(work)), args.cores)
            rows.append({"replicas": r, **_analyze_record(work)})
    out = {
        "config": args.bank_config,
        "cores": args.cores,
        "replicas": cfg["replicas"],
        "train_jobs": blocks,
        **full,
        "cpu_utilization": full["cpu_s"] / full["wall_s"],
        "analysis": rows,
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }
    print(
        f"\n{args.bank_config}: {cfg['replicas']} replicas in {blocks} train jobs, "
        f"{full['wall_s'] / 60:.1f} min wall, {full['cpu_s'] / 60:.1f} CPU min "
        f"(utilization {out['cpu_utilization']:.2f} of {args.cores} cores)"
    )
    print(
        table(
            rows,
            [
                ("replicas", "replicas", ""),
                ("analyze_s", "analyze s", ".1f"),
                ("analyze_max_rss_mb", "analyze peak RSS MB", ".0f"),
            ],
        )
    )
    return out


# ----------------------------------------------------------------------------------- influence


def _influence_loop(members: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """The definition as written, one pool example at a time (vectorized over test examples)."""
    out = np.empty((members.shape[1], correct.shape[1]), np.float32)
    for i in range(members.shape[1]):
        m = members[:, i]
        out[i] = correct[m].mean(0) - correct[~m].mean(0)
    return out


def section_influence(args: argparse.Namespace) -> dict[str, Any]:
    """Train->test influence of a 1,024-model bank on digits' shape (1,348 x 450 at subset
    ratio 0.7): memlab's one-GEMM estimator against the per-example loop of the definition,
    alternating rounds, with the result's size and the peak traced memory of one call, and the
    exact null's expected false pairs (memlab.analysis.influence)."""
    import tracemalloc

    from memlab.analysis.influence import expected_false_pairs, influence_matrix

    before = loadavg()
    rng = np.random.default_rng(0)
    members = data.balanced_subsets(1348, 944, 1024, seed=1)
    correct = rng.random((1024, 450)) < 0.9

    def seconds(f: Callable[[], Any]) -> Callable[[], float]:
        def timed() -> float:
            t0 = time.perf_counter()
            f()
            return time.perf_counter() - t0

        return timed

    def gemm() -> Any:
        return influence_matrix(members, correct)

    variants = {"gemm": seconds(gemm), "loop": seconds(lambda: _influence_loop(members, correct))}
    res = alternate(variants, args.rounds)
    result = gemm()
    exact = np.abs(result.influence - _influence_loop(members, correct)).max()
    tracemalloc.start()
    gemm()
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    t0 = time.perf_counter()
    false = expected_false_pairs(result, np.ones(1348, bool), 0.15)
    null_s = time.perf_counter() - t0
    out = {
        "bank": [1024, 1348, 450],
        "gemm_s": res["gemm"],
        "loop_s": res["loop"],
        "speedup": ratio(res, "loop", "gemm"),
        "max_abs_difference": float(exact),
        "result_mb": (result.influence.nbytes + result.se.nbytes) / 2**20,
        "peak_traced_mb": peak_mb,
        "null_s": null_s,
        "expected_false_pairs_all_candidates": false,
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }
    print(
        f"influence of a 1024 x 1348 x 450 bank: GEMM {np.median(res['gemm']):.3f} s, loop "
        f"{np.median(res['loop']):.3f} s ({out['speedup']:.1f}x; max |difference| {exact:.1e}); "
        f"results {out['result_mb']:.1f} MB, peak traced {peak_mb:.0f} MB; exact null "
        f"{null_s:.3f} s ({false:.2g} false pairs expected at 0.15 over all pairs)"
    )
    return out


# What a job's interpreter imports before the rule script (Snakemake 9's script preamble, and
# snakemake.io for the pickled ``snakemake`` object): memlab cannot change it, measured for scale.
SNAKEMAKE_PREAMBLE = "\n".join(
    (
        "import pickle",
        "import snakemake.io",
        "from snakemake.logging import logger",
        "from snakemake.iocontainers import Snakemake",
    )
)


def section_fixed_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Per-job fixed cost: each rule script's module-level imports (conftest.script_imports) in a
    fresh interpreter, against the floors ``python -c pass`` and ``python -c "import torch"`` and
    Snakemake's script preamble, alternating rounds (median seconds, and the median of per-round
    ratios to the torch floor); with the heavy modules each script's imports pull in."""
    before = loadavg()
    floors = {"python -c pass": "pass", "python -c 'import torch'": "import torch"}
    codes = floors | {"snakemake preamble": SNAKEMAKE_PREAMBLE}
    codes |= {name: script_imports(path) for name, path in rule_scripts().items()}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # this checkout's library

    def seconds(code: str) -> Callable[[], float]:
        def timed() -> float:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
            return time.perf_counter() - t0

        return timed

    res = alternate({name: seconds(code) for name, code in codes.items()}, args.rounds)
    heavy = fresh_imports(codes)
    floor, torch_floor = (statistics.median(res[k]) for k in floors)
    rows = [
        {
            "rule": name,
            "seconds": statistics.median(res[name]),
            "over_pass": statistics.median(res[name]) - floor,
            "over_torch": ratio(res, name, "python -c 'import torch'"),
            "heavy": " ".join(heavy[name]) or "-",
        }
        for name in codes
    ]
    cols = [
        ("rule", "rule", ""),
        ("seconds", "seconds", ".3f"),
        ("over_pass", "- python -c pass", ".3f"),
        ("over_torch", "/ import torch", ".2f"),
        ("heavy", "heavy modules", ""),
    ]
    print(table(rows, cols))
    return {
        "rows": rows,
        "floor_s": floor,
        "torch_floor_s": torch_floor,
        "rounds": args.rounds,
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }


def section_memory_net(args: argparse.Namespace) -> dict[str, Any]:
    """The memory network (memlab.engine.memory_net) against an MLP of the same width and depth,
    both through memlab's engine (train_run: stacked, per-epoch evaluation), model-epochs per second
    at subsets of 100, 400 and 1000 digits, 32 replicas, width 64, batch 64, 1 thread,
    alternating rounds. Its read costs O(subset) per query, so the ratio grows with the subset."""
    from memlab.plan.kinds import MemoryNet

    configure_threads(1)
    before = loadavg()
    split = digits_split()
    r, width, batch = 32, 64, 64
    rows = []
    for size in (100, 400, 1000):
        members = data.balanced_subsets(len(split.y_pool), size, r, 0)
        kinds = {"mlp": MLP("mlp", width, 1), "memory_net": MemoryNet("mem", width, 1, None, 0.03)}

        def fit(variant: Any, epochs: int, members: np.ndarray = members) -> None:
            runs.train_run(
                split, split.y_pool, np.zeros(len(split.y_pool), bool), members, variant,
                _regime(batch, epochs), seed=0, log=lambda s: None,
            )  # fmt: skip

        fns = {k: partial(fit, v) for k, v in kinds.items()}
        res = compare(fns, dict.fromkeys(fns, r), args.rounds, args.seconds)
        rows.append(
            {
                "subset": size,
                "mlp_model_epochs_per_s": statistics.median(res["mlp"]),
                "memory_net_model_epochs_per_s": statistics.median(res["memory_net"]),
                "mlp_over_memory_net": ratio(res, "mlp", "memory_net"),
            }
        )
    cols = [
        ("subset", "subset", "d"),
        ("mlp_model_epochs_per_s", "MLP model-epochs/s", ".0f"),
        ("memory_net_model_epochs_per_s", "memory net model-epochs/s", ".0f"),
        ("mlp_over_memory_net", "MLP / memory net", ".1f"),
    ]
    print(table(rows, cols))
    return {"rows": rows, "loadavg_before": before, "loadavg_after": loadavg()}


def textbook_cnn(x: np.ndarray, y: np.ndarray, width: int, batch: int, epochs: int) -> None:
    """The CNN loop from the tutorials, memlab's architecture (conv3x3(c) - ReLU - conv3x3(2c) -
    ReLU - maxpool2 - linear) as an ``nn.Sequential`` of ``nn.Conv2d``, a DataLoader, Adam."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    images = torch.from_numpy(x).reshape(-1, 1, 8, 8)
    loader = DataLoader(TensorDataset(images, torch.from_numpy(y)), batch_size=batch, shuffle=True)
    model = nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 16, 10),
    )
    opt = torch.optim.Adam(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()


def section_cnn(args: argparse.Namespace) -> dict[str, Any]:
    """memlab's stacked CNN (runs.train_run: all replicas in one grouped convolution, per-epoch
    evaluation) with its hand-written step (memlab.engine.fastpath.CNNStep) and with the plain
    autograd step, against the textbook CNN loop, model-epochs per second at widths 4, 8 and 16 (the
    default study's is 8), 32 replicas, batch 64, 1000 examples per model, 1 thread, alternating
    rounds."""
    from unittest import mock

    from memlab.plan.kinds import CNN

    configure_threads(1)
    before = loadavg()
    split = digits_split()
    r, n, batch = 32, args.train_size, 64
    members = data.balanced_subsets(len(split.y_pool), n, r, 0)
    x0 = split.x_pool[members[0]].astype(np.float32)
    y0 = split.y_pool[members[0]].astype(np.int64)
    rows = []
    for width in (4, 8, 16):
        params = CNN("cnn", width).parameter_count(64, 10, (8, 8))
        # Forward multiply-adds per example: conv1 + conv2 over 64 pixels, then the head.
        macs = 64 * (9 * width + 9 * width * 2 * width) + 2 * width * 16 * 10

        def memlab_cnn(epochs: int, w: int = width) -> None:
            runs.train_run(
                split, split.y_pool, np.zeros(len(split.y_pool), bool), members, CNN("cnn", w),
                _regime(batch, epochs), seed=0, log=lambda s: None,
            )  # fmt: skip

        def memlab_autograd(epochs: int, w: int = width) -> None:
            with mock.patch("memlab.engine.train.fast_step", lambda model: None):
                memlab_cnn(epochs, w)

        fns = {
            "textbook": lambda e, w=width: textbook_cnn(x0, y0, w, batch, e),
            "memlab": memlab_cnn,
            "autograd": memlab_autograd,
        }
        models = {"textbook": 1, "memlab": r, "autograd": r}
        res = compare(fns, models, args.rounds, args.seconds)
        med = {k: statistics.median(v) for k, v in res.items()}
        gflops = {k: v * 6 * macs * n / 1e9 for k, v in med.items()}
        rows.append(
            {
                "width": width,
                "params": params,
                "textbook_me_s": med["textbook"],
                "memlab_me_s": med["memlab"],
                "autograd_me_s": med["autograd"],
                "memlab_vs_autograd": ratio(res, "memlab", "autograd"),
                "memlab_vs_textbook": ratio(res, "memlab", "textbook"),
                "memlab_gflops": gflops["memlab"],
                "textbook_gflops": gflops["textbook"],
                "rounds": res,
            }
        )
    cols = [
        ("width", "width", "d"),
        ("params", "params", "d"),
        ("textbook_me_s", "textbook me/s", ".1f"),
        ("autograd_me_s", "memlab autograd me/s", ".1f"),
        ("memlab_me_s", "memlab me/s", ".1f"),
        ("memlab_vs_autograd", "memlab/autograd", ".2f"),
        ("memlab_vs_textbook", "memlab/textbook", ".2f"),
        ("textbook_gflops", "textbook GFLOP/s", ".2f"),
        ("memlab_gflops", "memlab GFLOP/s", ".2f"),
    ]
    print(
        f"CNN training throughput, model-epochs/s: digits, {n} examples per model, memlab "
        f"trains {r} replicas with per-epoch evaluation (memlab: the hand-written step, "
        f"autograd: the plain step); GFLOP/s counts 3 x the forward "
        f"multiply-adds x 2 of the training steps"
    )
    print(table(rows, cols))
    return {"rows": rows, "loadavg_before": before, "loadavg_after": loadavg()}


# ------------------------------------------------------------------------------------ sequence

SEQ_CONTEXT, SEQ_EMBEDDING, SEQ_HIDDEN, SEQ_BATCH = 24, 32, 64, 32


def sequence_corpus(documents: int = 1000) -> tuple[np.ndarray, np.ndarray, int]:
    """Training and held-out rows of a generated corpus as rule prepare_text writes them for the
    sequence engine (memlab.data.sequences: BOS, word ids, PAD to ``SEQ_CONTEXT``); the vocab."""
    from memlab.data.sequences import prepare

    spec = {
        "kind": "text", "vocab_size": 500, "documents": documents, "held_out": 200,
        "facts": 256, "entities": 128, "values": 16, "context": SEQ_CONTEXT,
    }  # fmt: skip
    arrays = prepare(spec, "benchmark", 0.25, log=lambda msg: None)
    return arrays["tokens"], arrays["heldout"], len(arrays["vocabulary"])


def textbook_gru(tokens: np.ndarray, vocab: int, epochs: int) -> None:
    """The word-level GRU language model of the tutorials: ``nn.Embedding`` - ``nn.GRU`` -
    ``nn.Linear``, a DataLoader, AdamW, cross-entropy ignoring PAD, for one model."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from memlab.engine.sequence import PAD

    data = torch.from_numpy(tokens)
    loader = DataLoader(TensorDataset(data), batch_size=SEQ_BATCH, shuffle=True)
    emb, gru = (
        nn.Embedding(vocab, SEQ_EMBEDDING),
        nn.GRU(SEQ_EMBEDDING, SEQ_HIDDEN, batch_first=True),
    )
    head = nn.Linear(SEQ_HIDDEN, vocab)
    params = [*emb.parameters(), *gru.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    for _ in range(epochs):
        for (batch,) in loader:
            out, _ = gru(emb(batch[:, :-1]))
            opt.zero_grad()
            loss_fn(head(out).reshape(-1, vocab), batch[:, 1:].reshape(-1)).backward()
            opt.step()


def section_sequence(args: argparse.Namespace) -> dict[str, Any]:
    """memlab's stacked GRU language model (memlab.engine.sequence.train_sequences: 16 replicas
    in one stack, per-epoch evaluation on each replica's documents and the held-out set) against
    the textbook per-model loop (textbook_gru), model-epochs per second, half the generated
    corpus's documents per model, batch 32, 1 thread, alternating rounds."""
    from memlab.engine.sequence import StackedGRU, train_sequences
    from memlab.engine.train import init_seeds

    configure_threads(1)
    before = loadavg()
    tokens, heldout, vocab = sequence_corpus()
    r, n = 16, len(tokens) // 2
    rng = np.random.default_rng(0)
    members = np.zeros((r, len(tokens)), bool)
    for row in members:
        row[rng.choice(len(tokens), n, replace=False)] = True

    def memlab_seq(epochs: int) -> None:
        model = StackedGRU(
            r, vocab, SEQ_EMBEDDING, SEQ_HIDDEN, replica_seeds=init_seeds(0, range(r))
        )
        train_sequences(
            model, tokens, members, None, heldout, _regime(SEQ_BATCH, epochs), seed=0,
            log=lambda s: None,
        )  # fmt: skip

    def textbook(epochs: int) -> None:
        for row in members:
            textbook_gru(tokens[row], vocab, epochs)

    fns = {"textbook": textbook, "memlab": memlab_seq}
    models = {"textbook": r, "memlab": r}
    res = compare(fns, models, args.rounds, args.seconds)
    med = {k: statistics.median(v) for k, v in res.items()}
    row = {
        "replicas": r,
        "docs_per_model": n,
        "vocab": vocab,
        "textbook_me_s": med["textbook"],
        "memlab_me_s": med["memlab"],
        "memlab_vs_textbook": ratio(res, "memlab", "textbook"),
        "seconds_per_epoch": r / med["memlab"],
        "rounds": res,
    }
    cols = [
        ("replicas", "replicas", "d"),
        ("docs_per_model", "docs/model", "d"),
        ("textbook_me_s", "textbook me/s", ".2f"),
        ("memlab_me_s", "memlab me/s", ".2f"),
        ("memlab_vs_textbook", "memlab/textbook", ".2f"),
        ("seconds_per_epoch", "memlab s/epoch", ".2f"),
    ]
    print(
        f"GRU language model training throughput, model-epochs/s: generated corpus, {n} "
        f"documents of {SEQ_CONTEXT} tokens per model, vocab {vocab}, embedding {SEQ_EMBEDDING}, "
        f"hidden {SEQ_HIDDEN}, batch {SEQ_BATCH}; memlab trains {r} replicas with per-epoch "
        "evaluation, the textbook loop trains them one by one without evaluation"
    )
    print(table([row], cols))
    return {"rows": [row], "loadavg_before": before, "loadavg_after": loadavg()}


# ---------------------------------------------------------------------------------- estimators


def _update_before_estimators(acc, replica, index, correct, loss) -> None:
    """memlab.engine.dynamics.update as it was before the cheap estimators (issue 28): the
    forgetting and cartography sums only."""
    at = (replica[:, None].expand_as(index), index)
    acc["forgotten"][at] += (acc["last"][at] & ~correct).int()
    acc["last"][at] = correct
    acc["epochs"][at] += 1
    acc["correct"][at] += correct.int()
    p = (-loss).exp().double()
    acc["p_sum"][at] += p
    acc["p_sq"][at] += p * p


def section_estimators(args: argparse.Namespace) -> dict[str, Any]:
    """What the cheap estimators cost a train job: the engine with the running sums of
    memlab.engine.dynamics (CSL, final loss, learning time besides forgetting and cartography)
    against the same engine with the sums it had before them, alternating rounds; then, on the
    trained block, the evaluate job's loss sensitivity (on by default) and 10-probe curvature
    (off by default) over the pool, as shares of the training time."""
    from unittest import mock

    from memlab.engine import dynamics, input_gradients

    configure_threads(1)
    before = loadavg()
    split = digits_split()
    r, width, batch, epochs = 16, 256, 64, args.estimator_epochs
    members = data.balanced_subsets(len(split.y_pool), round(0.7 * len(split.y_pool)), r, 0)
    variant = MLP("mlp", width, DEPTH)

    def train(gradient_every: int = 0) -> tuple[float, dict]:
        t0 = time.perf_counter()
        state, _, _ = runs.train_run(
            split, split.y_pool, np.zeros(len(split.y_pool), bool), members, variant,
            _regime(batch, epochs), seed=0, log=lambda s: None, gradient_every=gradient_every,
        )  # fmt: skip
        return time.perf_counter() - t0, state

    def with_sums() -> float:
        return -train()[0]  # alternate() keeps "higher is better"

    def before_sums() -> float:
        with mock.patch.object(dynamics, "update", _update_before_estimators):
            return -train()[0]

    variants = {
        "with": with_sums,
        "before": before_sums,
        "gradients_10": lambda: -train(10)[0],
        "gradients_1": lambda: -train(1)[0],
    }
    res = alternate(variants, args.rounds)
    t_with, t_before, t_g10, t_g1 = (statistics.median(-v for v in res[k]) for k in variants)
    _, state = train()
    model = runs._build(variant, split, _regime(batch, epochs), 0, list(range(r)))
    model.load_state_dict(state)
    model.eval()

    def timed(probes: int) -> float:
        t0 = time.perf_counter()
        input_gradients.scores(
            model, split.x_pool, split.y_pool, r, curvature_probes=probes, curvature_h=1e-3, seed=0
        )
        return time.perf_counter() - t0

    t_sens = statistics.median(timed(0) for _ in range(args.rounds))
    t_curv = statistics.median(timed(10) for _ in range(args.rounds)) - t_sens
    rows = [
        {"what": "train job, running sums before issue 28", "seconds": t_before, "share": 1.0},
        {"what": "train job, with CSL / final loss / learning time", "seconds": t_with,
         "share": t_with / t_before},
        {"what": "train job, gradient sums every 10 epochs (off by default)", "seconds": t_g10,
         "share": t_g10 / t_before},
        {"what": "train job, gradient sums every epoch", "seconds": t_g1,
         "share": t_g1 / t_before},
        {"what": "loss sensitivity (evaluate job, default on)", "seconds": t_sens,
         "share": t_sens / t_before},
        {"what": "curvature, 10 probes (off by default)", "seconds": t_curv,
         "share": t_curv / t_before},
        {"what": "default estimators: all added / train job before", "seconds": t_with + t_sens,
         "share": (t_with + t_sens) / t_before},
    ]  # fmt: skip
    print(
        f"Cheap estimators' cost: digits, MLP {DEPTH}x{width}, {r} replicas on 70% subsets, "
        f"batch {batch}, {epochs} epochs (medians of {args.rounds} alternating rounds; share: of "
        "the train job before the estimators)"
    )
    print(table(rows, [("what", "what", "s"), ("seconds", "seconds", ".2f"),
                       ("share", "share", ".3f")]))  # fmt: skip
    return {"rows": rows, "rounds": res, "loadavg_before": before, "loadavg_after": loadavg()}


# ---------------------------------------------------------------------------------------- main

SECTIONS = (
    "gemm",
    "train",
    "e2e",
    "overhead",
    "bank",
    "influence",
    "memory_net",
    "cnn",
    "fixed_cost",
    "estimators",
    "sequence",
)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds per comparison (3)")
    p.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    p.add_argument("--replicas", type=int, default=64, help="replicas memlab trains (64)")
    p.add_argument("--train-size", type=int, default=1000, help="examples per model (1000)")
    p.add_argument(
        "--seconds",
        type=float,
        default=0.5,
        help="target seconds per measurement; sets the epochs per variant (0.5)",
    )
    p.add_argument(
        "--min-epochs",
        type=int,
        default=1,
        help="train: at least this many epochs per measurement (1); a full-batch run's epochs "
        "after its first reuse the evaluation's forward pass",
    )
    p.add_argument(
        "--sklearn-full-batch",
        action="store_true",
        help="also time scikit-learn in the full-batch rows",
    )
    p.add_argument(
        "--estimator-epochs",
        type=int,
        default=30,
        help="estimators: epochs of the train job the estimators are measured against (30)",
    )
    p.add_argument("--jobs", type=int, default=10_000, help="jobs in the overhead grid (10000)")
    p.add_argument(
        "--default-study",
        action="store_true",
        help="e2e: also run the default study (about 15-20 minutes)",
    )
    p.add_argument("--cores", type=int, default=2, help="e2e, bank: snakemake --cores (2)")
    p.add_argument("--bank-config", default="config/bank.yaml", help="bank: the large bank")
    p.add_argument(
        "--bank-replicas",
        type=int,
        nargs="+",
        default=[64, 256],
        help="bank: also analyze the bank's first N replicas (64 256)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    args = p.parse_args(argv)
    # The bank section runs for up to half an hour: only when asked for.
    sections = args.sections or [s for s in SECTIONS if s != "bank"]
    if unknown := set(sections) - set(SECTIONS):
        p.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    torch.set_num_threads(1)
    print(
        f"memlab benchmarks on {cpu_name()}, torch {torch.__version__}, 1 thread; load {loadavg()}",
        flush=True,
    )
    peak = None
    for s in SECTIONS:
        if s not in sections:
            continue
        print(f"\n== {s} ==", flush=True)
        if s in ("gemm", "train") and peak is None:
            res = section_gemm(args)
            peak = res["peak_gflops"]
            if s == "gemm":
                print(f"wrote {write_json('gemm', res, args.out)}")
                continue
        if s == "train":
            res = section_train(args, peak)
        elif s == "e2e":
            res = section_e2e(args)
        elif s == "bank":
            res = section_bank(args)
        elif s == "influence":
            res = section_influence(args)
        elif s == "memory_net":
            res = section_memory_net(args)
        elif s == "cnn":
            res = section_cnn(args)
        elif s == "fixed_cost":
            res = section_fixed_cost(args)
        elif s == "estimators":
            res = section_estimators(args)
        elif s == "sequence":
            res = section_sequence(args)
        else:
            res = section_overhead(args)
        print(f"wrote {write_json(s, res, args.out)}", flush=True)


if __name__ == "__main__":
    main()
