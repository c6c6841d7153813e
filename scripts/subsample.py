"""Rule subsample: draw the replicas' training subsets of one size (balanced design)."""

from memlab import data
from memlab.io import save_npz
from memlab.seeds import derive_seed
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params
    split = data.load_split(snakemake.input[0])
    n_pool = len(split.y_pool)
    members = data.balanced_subsets(
        n_pool, p.size, p.replicas, derive_seed(p.seed, "subsample", p.size)
    )
    counts = members.sum(axis=0)
    log(
        f"{p.replicas} subsets of {p.size}/{n_pool}; each example in {counts.min()}-"
        f"{counts.max()} subsets"
    )
    save_npz(snakemake.output[0], members=members)
