# Train: one job per block of replicas of a (dataset, noise, size, model variant, regime) trains
# the block's replicas at once.
# k-NN "trains" by remembering its subsets; it shares the rest of the path with the networks.


rule train:
    input:
        split=rules.prepare.output.split,
        labels=rules.label_noise.output.labels,
        subsets=rules.subsample.output.subsets,
    output:
        checkpoint=f"{RUNS_DIR}/{BLOCK}/checkpoint.pt",
        history=f"{RUNS_DIR}/{BLOCK}/history.parquet",
    log:
        f"results/logs/train/{BLOCK}.log",
    benchmark:
        f"results/benchmarks/train/{BLOCK}.tsv"
    group:
        block_group
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,  # script peak 390 MB; runtime: from the block's measured cost
        runtime=lambda wc: block_minutes(wc, local=60),
    params:
        code=library_code("train.py"),
        model=variant,
        settings=train_settings,
        seed=config["seed"],
        replicas=block_replicas,
        run=run_columns,
        gradient_every=config["estimators"]["gradient_every"],
    script:
        rule_script("train")
