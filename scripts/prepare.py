"""Rule prepare: load a dataset and write its fixed stratified pool/test split."""

from memlab import data
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params
    ds = data.load_dataset(p.dataset, name=snakemake.wildcards.dataset)
    pool, test = data.split_pool_test(ds.y, p.test_fraction, p.seed)
    log(
        f"{ds.name}: {len(ds.y)} examples, {ds.X.shape[1]} features, {ds.n_classes} classes, "
        f"image shape {ds.image_shape}; pool {len(pool)}, held-out {len(test)}"
    )
    data.save_split(snakemake.output[0], ds, pool, test)
