"""Rule label_noise: replace a fraction of pool labels by a different class, record which."""

from memlab.data import datasets as data
from memlab.data.canaries import real_rows
from memlab.io import save_npz
from memlab.rulejob import rule_job
from memlab.seeds import derive_seed

with rule_job(snakemake) as log:
    p = snakemake.params
    split = data.load_split(snakemake.input[0])
    seed = derive_seed(p.seed, "label_noise", str(p.noise))
    # Canary rows (after the real ones) keep their labels: they are random already.
    y, flipped = data.flip_labels(split.y_pool, p.noise, split.n_classes, seed, real_rows(split))
    log(f"noise {p.noise}: flipped {int(flipped.sum())} of {len(y)} pool labels")
    save_npz(snakemake.output[0], y_pool=y, y_clean=split.y_pool, flipped=flipped)
