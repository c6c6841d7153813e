# Figures and the report: seaborn figures (PNG for the report, SVG for print), one job each, and a
# generated summary of the headline numbers; `snakemake --report` bundles them into one HTML file.


rule figures:
    input:
        **FIGURE_INPUTS,
        splits=expand(rules.prepare.output.split, dataset=STUDY.datasets),
    output:
        png=report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
        ),
        svg="results/figures/{figure}.svg",
    log:
        "results/logs/figures/{figure}.log",
    benchmark:
        "results/benchmarks/figures/{figure}.tsv"
    wildcard_constraints:
        figure="|".join(FIGURES),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1200,  # script peak 570 MB
        runtime=2,  # one figure per job (measured 17 s for all of them in one job)
    params:
        code=figure_code,
        caption=figure_caption,
        dpi=config["figures"]["dpi"],
        randomizations=randomizations(),
        perturbations=perturb_settings(),
    script:
        rule_script("figures")


# The findings page shows each answer beside the figure that supports it (inline PNG), so it
# waits for those figures (only the ones the study draws: memlab.plan.registry.finding_figures).
rule summarize:
    input:
        **FIGURE_INPUTS,
        figures=[f.path("png") for f in finding_figures(STUDY)],
    output:
        summary=report(
            SUMMARY_PAGE, caption="../report/summary.rst", category="Findings"
        ),
        findings=FINDINGS_FILE,
        text=FINDINGS_TEXT,
        front=FINDINGS_FRONT,
    log:
        "results/logs/summarize.log",
    benchmark:
        "results/benchmarks/summarize.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=800,  # script peak 340 MB
        runtime=2,  # slowest job 2 s
    params:
        code=library_code("summarize.py"),
        randomizations=randomizations(),
        study=study_config(),
    script:
        rule_script("summarize")
