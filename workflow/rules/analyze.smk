# Analyze: gather every run into tidy tables a pandas user can pivot.


rule analyze:
    input:
        metrics=run_files("metrics.parquet"),
        histories=run_files("history.parquet"),
        evaluations=run_files("evaluation.npz"),
        splits=expand(rules.prepare.output.split, dataset=STUDY.datasets),
        sequence_evaluations=sequence_files("evaluation.npz"),
    output:
        **table_outputs(),
    log:
        "results/logs/analyze.log",
    benchmark:
        "results/benchmarks/analyze.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,  # script peak 390 MB
        runtime=5,  # slowest job 3 s
    params:
        code=library_code("analyze.py"),
        runs=all_run_columns(),
        sequence_runs=all_sequence_run_columns(),
        seed=config["seed"],
        agreement_k=config["analysis"]["agreement_k"],
        power=config["analysis"]["power"],
        influence=config["analysis"]["influence"],
        corruption_baselines=canonical(CORRUPTION_BASELINES),
        randomizations=randomizations(),
    script:
        rule_script("analyze")
