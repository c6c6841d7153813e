# The removal experiment (memlab.analysis.removal; config `removal`): its second stage depends on the first
# stage's scores. removal_choice ranks a first-stage run's pool from that run's evaluations (not
# from the study tables, so that re-analysing reruns nothing here); each arm's subsets leave the
# chosen examples out; train and evaluate are the study's own rules on those subsets.


rule removal_choice:
    input:
        evaluations=first_stage_evaluations,
    output:
        choice=f"{REMOVAL_DIR}/{RUN}/choice.npz",
    log:
        f"results/logs/removal_choice/{RUN}.log",
    benchmark:
        f"results/benchmarks/removal_choice/{RUN}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=library_code("removal_choice.py"),
        run=run_columns,
        influence=pair_thresholds(),
    script:
        rule_script("removal_choice")


rule removal_subsample:
    input:
        choice=rules.removal_choice.output.choice,
    output:
        subsets=f"{REMOVAL_DIR}/{REMOVAL_BLOCK}/subsets.npz",
    log:
        f"results/logs/removal_subsample/{REMOVAL_BLOCK}.log",
    benchmark:
        f"results/benchmarks/removal_subsample/{REMOVAL_BLOCK}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        code=library_code("removal_subsample.py"),
        arm=lambda wc: wc.arm,
        k=lambda wc: int(wc.k),
        replicas=removal_block_replicas,
        seed=config["seed"],
    script:
        rule_script("removal_subsample")


use rule train as removal_train with:
    input:
        split=rules.prepare.output.split,
        labels=rules.label_noise.output.labels,
        subsets=rules.removal_subsample.output.subsets,
    output:
        checkpoint=f"{REMOVAL_DIR}/{REMOVAL_BLOCK}/checkpoint.pt",
        history=f"{REMOVAL_DIR}/{REMOVAL_BLOCK}/history.parquet",
    log:
        f"results/logs/removal_train/{REMOVAL_BLOCK}.log",
    benchmark:
        f"results/benchmarks/removal_train/{REMOVAL_BLOCK}.tsv"
    group:
        None
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        code=library_code("train.py"),
        model=variant,
        settings=train_settings,
        seed=config["seed"],
        replicas=removal_block_replicas,
        run=run_columns,
        gradient_every=0,  # the removal arms need no memorization estimators


use rule evaluate as removal_evaluate with:
    input:
        checkpoint=rules.removal_train.output.checkpoint,
        split=rules.prepare.output.split,
        labels=rules.label_noise.output.labels,
        perturbed=rules.perturb.output.perturbed,
    output:
        evaluation=f"{REMOVAL_DIR}/{REMOVAL_BLOCK}/evaluation.npz",
        metrics=f"{REMOVAL_DIR}/{REMOVAL_BLOCK}/metrics.parquet",
    log:
        f"results/logs/removal_evaluate/{REMOVAL_BLOCK}.log",
    benchmark:
        f"results/benchmarks/removal_evaluate/{REMOVAL_BLOCK}.tsv"
    group:
        None
    resources:
        mem_mb=2000,
        runtime=30,


rule removal_analyze:
    input:
        evaluations=removal_files("evaluation.npz"),
        choices=[
            rules.removal_choice.output.choice.format(**run.wildcards())
            for run in STUDY.first_stages
        ],
    output:
        **table_outputs("removal_analyze"),
    log:
        "results/logs/removal_analyze.log",
    benchmark:
        "results/benchmarks/removal_analyze.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=library_code("removal_analyze.py"),
        removals=removal_specs(),
    script:
        rule_script("removal_analyze")
