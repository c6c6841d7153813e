"""Rule prepare: load a dataset, write its fixed stratified pool/test split (randomized if
asked)."""

from memlab import data
from memlab.randomization import randomize
from memlab.seeds import derive_seed
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params
    ds = data.load_dataset(p.dataset, name=snakemake.wildcards.dataset)
    pool, test = data.split_pool_test(ds.y, p.test_fraction, p.seed)
    log(
        f"{ds.name}: {len(ds.y)} examples, {ds.X.shape[1]} features, {ds.n_classes} classes, "
        f"image shape {ds.image_shape}, token shape {ds.token_shape}; pool {len(pool)}, "
        f"held-out {len(test)}"
    )
    randomization = p.dataset.get("randomization")
    split, changed = randomize(
        data.make_split(ds, pool, test), randomization, derive_seed(p.seed, "randomize")
    )
    if randomization:
        log(f"randomization {randomization}: {int(changed.sum())} pool labels changed")
    data.save_split(
        snakemake.output[0], split, pool_index=pool, test_index=test, label_randomized=changed
    )
