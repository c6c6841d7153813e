"""Rule removal_subsample: one block of a removal arm trains on the whole pool less the examples
the arm removes (memlab.analysis.removal)."""

import numpy as np

from memlab.analysis import removal
from memlab.io import load_npz, save_npz
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params
    ranking = load_npz(snakemake.input.choice)["ranking"]
    replicas = range(*p.replicas)
    left_out = removal.removed(p.arm, p.k, ranking, replicas, p.seed)
    log(
        f"{p.arm}, k={p.k}: replicas {replicas.start}-{replicas.stop - 1} train on "
        f"{len(ranking) - p.k} of {len(ranking)} pool examples"
    )
    save_npz(snakemake.output[0], members=~left_out, replica=np.asarray(replicas))
