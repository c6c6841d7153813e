"""Rule prepare: load a dataset, write its fixed stratified pool/test split (thinned to a long
tail, randomized, with canaries, if asked)."""

from memlab.data import datasets as data
from memlab.data.canaries import add_canaries, check_combination
from memlab.data.long_tail import split_indices
from memlab.data.randomization import randomize
from memlab.rulejob import rule_job
from memlab.seeds import derive_seed

with rule_job(snakemake) as log:
    p = snakemake.params
    name = snakemake.wildcards.dataset
    ds, pool, test, tail = split_indices(p.dataset, p.test_fraction, p.seed, name=name)
    log(
        f"{ds.name}: {len(ds.y)} examples, {ds.X.shape[1]} features, {ds.n_classes} classes, "
        f"image shape {ds.image_shape}, token shape {ds.token_shape}; pool {len(pool)}, "
        f"held-out {len(test)}"
    )
    if tail:
        log(
            f"long tail {p.dataset['long_tail']}: training counts per subpopulation by rank "
            f"{tail['subpopulation_frequency'][: p.dataset['long_tail']['subpopulations']]}"
        )
    randomization = p.dataset.get("randomization")
    split, changed = randomize(
        data.make_split(ds, pool, test), randomization, derive_seed(p.seed, "randomize")
    )
    if randomization:
        log(f"randomization {randomization}: {int(changed.sum())} pool labels changed")
    # Last, so the models see standardized inputs whatever the randomization did to them.
    if data.standardizes(p.dataset, ds, name):
        split = data.standardize(split)
        log(f"{ds.X.shape[1]} features standardized with the training pool's mean and std")
    # After standardizing: canaries are drawn in the features the models see, and the pool's
    # statistics stay those of the real examples.
    canaries = check_combination(p.dataset, name)
    split = add_canaries(split, canaries, p.seed)
    if canaries:
        log(
            f"canaries {canaries}: {canaries.pool_rows()} pool rows added, "
            f"{canaries.references} references"
        )
    data.save_split(
        snakemake.output[0],
        split,
        pool_index=pool,
        test_index=test,
        label_randomized=changed,
        **tail,
    )
