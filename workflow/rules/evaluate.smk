# Evaluate: per block of replicas, each replica per example on the training pool and the held-out
# set; aggregates on every perturbed held-out set.


rule evaluate:
    input:
        checkpoint=f"{RUNS_DIR}/{BLOCK}/checkpoint.pt",
        split="results/data/{dataset}/split.npz",
        labels="results/data/{dataset}/labels-noise{noise}.npz",
        perturbed="results/data/{dataset}/perturbed.npz",
    output:
        evaluation=f"{RUNS_DIR}/{BLOCK}/evaluation.npz",
        metrics=f"{RUNS_DIR}/{BLOCK}/metrics.parquet",
    log:
        f"results/logs/evaluate/{BLOCK}.log",
    benchmark:
        f"results/benchmarks/evaluate/{BLOCK}.tsv"
    group:
        block_group
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc: block_minutes(wc, local=30),
    params:
        code=library_code("evaluate.py"),
        run=run_columns,
    script:
        "../../scripts/evaluate.py"
