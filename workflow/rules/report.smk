# Figures and the report: seaborn figures (PNG for the report, SVG for print), one job each, and a
# generated summary of the headline numbers; `snakemake --report` bundles them into one HTML file.


rule figures:
    input:
        **FIGURE_INPUTS,
        splits=expand("results/data/{dataset}/split.npz", dataset=STUDY.datasets),
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
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=figure_code,
        caption=figure_caption,
        dpi=config["figures"]["dpi"],
        randomizations=randomizations(),
        perturbations=perturb_settings(),
    script:
        "../../scripts/figures.py"


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
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=library_code("summarize.py"),
        randomizations=randomizations(),
        study=study_config(),
    script:
        "../../scripts/summarize.py"
