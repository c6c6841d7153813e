# Analyze: gather every run into tidy tables a pandas user can pivot.


rule analyze:
    input:
        metrics=run_files("metrics.parquet"),
        histories=run_files("history.parquet"),
    output:
        metrics="results/tables/metrics.parquet",
        metrics_csv="results/tables/metrics.csv",
        gap="results/tables/generalization_gap.csv",
        robustness="results/tables/robustness.csv",
        history="results/tables/history.parquet",
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary_table.rst",
            category="Tables",
        ),
    log:
        "results/logs/analyze.log",
    benchmark:
        "results/benchmarks/analyze.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/analyze.py"
