"""Rule subsample: draw the training subsets of one block of replicas (balanced design)."""

import numpy as np

from memlab import data
from memlab.io import save_npz
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params
    split = data.load_split(snakemake.input[0])
    n_pool = len(split.y_pool)
    replicas = range(*p.replicas)
    members = data.block_subsets(n_pool, p.size, replicas, p.seed)
    counts = members.sum(axis=0)
    log(
        f"replicas {replicas.start}-{replicas.stop - 1}: subsets of {p.size}/{n_pool}; each "
        f"example in {counts.min()}-{counts.max()} of them"
    )
    save_npz(snakemake.output[0], members=members, replica=np.asarray(replicas))
