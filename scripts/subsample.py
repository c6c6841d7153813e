"""Rule subsample: draw the training subsets of one block of replicas (balanced design)."""

import numpy as np

from memlab.data import datasets as data
from memlab.data.canaries import canary_subsets, real_rows
from memlab.io import save_npz
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params
    split = data.load_split(snakemake.input[0])
    n_pool = real_rows(split)  # canary rows, if any, follow the real examples
    replicas = range(*p.replicas)
    if isinstance(p.size, dict):  # few-shot: {size, per_class}, stratified by the true labels
        labels = split.y_pool[:n_pool]
        members = data.block_few_shot_subsets(labels, p.size["per_class"], replicas, p.seed)
        what = f"{p.size['per_class']} per class"
    else:
        members = data.block_subsets(n_pool, p.size, replicas, p.seed)
        what = f"{p.size}/{n_pool}"
    counts = members.sum(axis=0)
    log(
        f"replicas {replicas.start}-{replicas.stop - 1}: subsets of {what}; each example in "
        f"{counts.min()}-{counts.max()} of them"
    )
    if split.pool_canary is not None:
        canaries = canary_subsets(split, replicas, p.seed)
        members = np.concatenate([members, canaries], axis=1)
        log(f"plus {canaries.sum(1).min()} canary rows per replica (half of each level)")
    save_npz(snakemake.output[0], members=members, replica=np.asarray(replicas))
