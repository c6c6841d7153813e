# Train: one job per block of replicas of a (dataset, noise, size, model variant, regime) trains
# the block's replicas at once.
# k-NN "trains" by remembering its subsets; it shares the rest of the path with the networks.


rule train:
    input:
        split="results/data/{dataset}/split.npz",
        labels="results/data/{dataset}/labels-noise{noise}.npz",
        subsets="results/data/{dataset}/subsets-n{size}/block{block}.npz",
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
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc: block_minutes(wc, local=60),
    params:
        code=library_code("train.py"),
        model=variant,
        settings=train_settings,
        seed=config["seed"],
        replicas=block_replicas,
        run=run_columns,
    script:
        "../../scripts/train.py"
