# Evaluate: per replica, per example on the training pool and the held-out set; aggregates on
# every perturbed held-out set.


rule evaluate:
    input:
        checkpoint=f"{RUNS_DIR}/{RUN}/checkpoint.pt",
        split="results/data/{dataset}/split.npz",
        labels="results/data/{dataset}/labels-noise{noise}.npz",
        perturbed="results/data/{dataset}/perturbed.npz",
    output:
        evaluation=f"{RUNS_DIR}/{RUN}/evaluation.npz",
        metrics=f"{RUNS_DIR}/{RUN}/metrics.parquet",
    log:
        f"results/logs/evaluate/{RUN}.log",
    benchmark:
        f"results/benchmarks/evaluate/{RUN}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=library_code("evaluate.py"),
        run=run_columns,
    script:
        "../../scripts/evaluate.py"
