# Evaluate: per block of replicas, each replica per example on the training pool and the held-out
# set; aggregates on every perturbed held-out set.


rule evaluate:
    input:
        checkpoint=rules.train.output.checkpoint,
        split=rules.prepare.output.split,
        labels=rules.label_noise.output.labels,
        perturbed=rules.perturb.output.perturbed,
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
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,  # script peak 370 MB; runtime: from the block's measured cost
        runtime=lambda wc: block_minutes(wc, local=30),
    params:
        code=library_code("evaluate.py"),
        run=run_columns,
        estimators=config["estimators"],
    script:
        rule_script("evaluate")
