"""Rule perturb: corrupted copies of the held-out set, generated once with a fixed seed."""

import numpy as np

from memlab import data, perturb
from memlab.io import save_npz
from memlab.seeds import derive_seed
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params.perturbations
    split = data.load_split(snakemake.input[0])
    skipped = [n for n in p["names"] if not perturb.applicable(n, split.image_shape)]
    if skipped:
        log(f"skipped (need image data): {', '.join(skipped)}")
    sets = perturb.perturbed_sets(
        split.x_test,
        image_shape=split.image_shape,
        names=p["names"],
        severities=p["severities"],
        seed=derive_seed(snakemake.params.seed, "perturb"),
    )
    log(f"{len(sets)} perturbed sets of {len(split.y_test)} held-out examples")
    save_npz(
        snakemake.output[0],
        names=np.array([k[0] for k in sets], dtype=str),
        severities=np.array([k[1] for k in sets], dtype=np.int64),
        x=np.stack(list(sets.values())) if sets else np.zeros((0, *split.x_test.shape), np.float32),
    )
