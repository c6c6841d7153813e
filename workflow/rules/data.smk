# Data: one fixed split per dataset, label noise per rate, balanced subsets per training-set size
# and block of replicas, and perturbed held-out sets generated once (never trained on).

# The shipped example CSVs (memlab.data.examples) that are missing here: only those can be written,
# so a file already at an example's path (written before, or a user's own table) and any file
# at another path are never replaced, whatever changed since.
MISSING_EXAMPLES = missing_examples(os.getcwd())


rule example_data:
    output:
        f"{EXAMPLE_DIR}/{{example}}.csv",
    log:
        "results/logs/example_data/{example}.log",
    wildcard_constraints:
        example="|".join(MISSING_EXAMPLES) or "(?!)",  # (?!) matches nothing
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        rule_script("example_data")


rule prepare:
    input:
        dataset_files,
    output:
        split="results/data/{dataset}/split.npz",
    log:
        "results/logs/prepare/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=900,  # script peak 370 MB
        runtime=2,  # slowest job 3 s
    params:
        code=library_code("prepare.py"),
        dataset=dataset_spec,
        test_fraction=lambda wc: STUDY.datasets[wc.dataset].test_fraction,
        seed=config["seed"],
    script:
        rule_script("prepare")


rule label_noise:
    input:
        rules.prepare.output.split,
    output:
        labels="results/data/{dataset}/labels-noise{noise}.npz",
    log:
        "results/logs/label_noise/{dataset}-noise{noise}.log",
    benchmark:
        "results/benchmarks/label_noise/{dataset}-noise{noise}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=800,  # script peak 290 MB
        runtime=2,  # slowest job 2 s
    params:
        code=library_code("label_noise.py"),
        noise=lambda wc: float(wc.noise),
        seed=config["seed"],
    script:
        rule_script("label_noise")


rule subsample:
    input:
        rules.prepare.output.split,
    output:
        subsets="results/data/{dataset}/subsets-n{size}/block{block}.npz",
    log:
        "results/logs/subsample/{dataset}-n{size}-block{block}.log",
    benchmark:
        "results/benchmarks/subsample/{dataset}-n{size}-block{block}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=800,  # script peak 290 MB
        runtime=2,  # slowest job 2 s
    params:
        code=library_code("subsample.py"),
        size=subset_size,
        replicas=block_replicas,
        seed=config["seed"],
    script:
        rule_script("subsample")


rule perturb:
    input:
        rules.prepare.output.split,
    output:
        perturbed="results/data/{dataset}/perturbed.npz",
    log:
        "results/logs/perturb/{dataset}.log",
    benchmark:
        "results/benchmarks/perturb/{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=900,  # script peak 315 MB
        runtime=2,  # slowest job 2 s
    params:
        code=library_code("perturb.py"),
        perturbations=perturb_settings(),
        seed=config["seed"],
        recall=lambda wc: bool(STUDY.datasets[wc.dataset].spec.get("recall")),
    script:
        rule_script("perturb")
