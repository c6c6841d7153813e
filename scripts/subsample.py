"""Rule subsample: draw the training subsets of one block of replicas (balanced design)."""

import numpy as np

from memlab.data import datasets as data
from memlab.io import save_npz
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params
    split = data.load_split(snakemake.input[0])
    n_pool = len(split.y_pool)
    replicas = range(*p.replicas)
    if isinstance(p.size, dict):  # few-shot: {size, per_class}, stratified by the true labels
        members = data.block_few_shot_subsets(split.y_pool, p.size["per_class"], replicas, p.seed)
        what = f"{p.size['per_class']} per class"
    else:
        members = data.block_subsets(n_pool, p.size, replicas, p.seed)
        what = f"{p.size}/{n_pool}"
    counts = members.sum(axis=0)
    log(
        f"replicas {replicas.start}-{replicas.stop - 1}: subsets of {what}; each example in "
        f"{counts.min()}-{counts.max()} of them"
    )
    save_npz(snakemake.output[0], members=members, replica=np.asarray(replicas))
