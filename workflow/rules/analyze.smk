# Analyze: gather every run into tidy tables a pandas user can pivot.


rule analyze:
    input:
        metrics=run_files("metrics.parquet"),
        histories=run_files("history.parquet"),
        evaluations=run_files("evaluation.npz"),
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
        noise_sweep="results/tables/noise_sweep.csv",
        chance_null="results/tables/chance_null.csv",
        memorization="results/tables/memorization.parquet",
        memorization_summary=report(
            "results/tables/memorization_summary.csv",
            caption="../report/memorization_summary.rst",
            category="Tables",
        ),
        membership=report(
            "results/tables/membership.csv",
            caption="../report/membership_table.rst",
            category="Tables",
        ),
        membership_roc="results/tables/membership_roc.parquet",
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
    params:
        runs=all_run_settings(),
    script:
        "../../scripts/analyze.py"
