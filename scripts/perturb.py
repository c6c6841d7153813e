"""Rule perturb: corrupted copies of the held-out set, generated once with a fixed seed."""

import numpy as np

from memlab.data import datasets as data
from memlab.data import perturb
from memlab.io import save_npz
from memlab.rulejob import rule_job
from memlab.seeds import derive_seed

with rule_job(snakemake) as log:
    p = snakemake.params.perturbations
    split = data.load_split(snakemake.input[0])
    for name, why in perturb.not_applicable(p["names"], split.image_shape).items():
        log(f"skipped (need image data): {name}: {why}")

    def corrupted(x, stream):
        return perturb.perturbed_sets(
            x,
            image_shape=split.image_shape,
            names=p["names"],
            severities=p["severities"],
            seed=derive_seed(snakemake.params.seed, stream),
            parameters=p.get("parameters"),
        )

    sets = corrupted(split.x_test, "perturb")
    # The parameter each set was made with, in SEVERITY_TABLE's units (8x8 pixels for spatial ones).
    table = perturb.severity_table(p.get("parameters"))
    values = [table[name][severity - 1] for name, severity in sets]
    for name in sorted(set(p.get("parameters", {})) & {name for name, _ in sets}):
        log(f"{name}: configured severity table {', '.join(f'{v:g}' for v in table[name])}")
    log(f"{len(sets)} perturbed sets of {len(split.y_test)} held-out examples")

    def stacked(sets, x):
        return np.stack(list(sets.values())) if sets else np.zeros((0, *x.shape), np.float32)

    # Exact recall (memlab.analysis.metrics.recall): the training pool under the same corruptions,
    # drawn from a stream of its own.
    pool = corrupted(split.x_pool, "perturb_pool") if snakemake.params.recall else {}
    if pool:
        log(f"{len(pool)} perturbed copies of the {len(split.y_pool)} pool examples (recall)")
    save_npz(
        snakemake.output[0],
        names=np.array([k[0] for k in sets], dtype=str),
        severities=np.array([k[1] for k in sets], dtype=np.int64),
        parameters=np.array(values, dtype=np.float64),
        x=stacked(sets, split.x_test),
        **({"x_pool": stacked(pool, split.x_pool)} if pool else {}),
    )
