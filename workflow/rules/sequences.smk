# Sequences: language models on text datasets (kind text), beside the classification runs. The
# documents are tokenized once, each block of replicas trains on complementary halves of them
# (a fact's or canary's copies together), every block is evaluated on the pool, held-out and
# typo'd documents, facts and canaries, and analyze_sequences gathers the runs into tables.


rule prepare_text:
    input:
        text_files,
    output:
        corpus="results/data/{dataset}/corpus.npz",
    log:
        "results/logs/prepare_text/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_text/{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=900,
        runtime=5,
    params:
        code=library_code("prepare_text.py"),
        dataset=text_spec,
        test_fraction=lambda wc: STUDY.texts[wc.dataset].test_fraction,
    script:
        rule_script("prepare_text")


rule subsample_text:
    input:
        corpus=rules.prepare_text.output.corpus,
    output:
        subsets="results/data/{dataset}/documents/block{block}.npz",
    log:
        "results/logs/subsample_text/{dataset}-block{block}.log",
    benchmark:
        "results/benchmarks/subsample_text/{dataset}-block{block}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=800,
        runtime=2,
    params:
        code=library_code("subsample_text.py"),
        replicas=lambda wc: STUDY.text_block(wc).spec(),
        seed=config["seed"],
    script:
        rule_script("subsample_text")


rule train_sequence:
    input:
        corpus=rules.prepare_text.output.corpus,
        subsets=rules.subsample_text.output.subsets,
    output:
        checkpoint=f"{SEQUENCE_RUNS_DIR}/{BLOCK}/checkpoint.pt",
        history=f"{SEQUENCE_RUNS_DIR}/{BLOCK}/history.parquet",
    log:
        f"results/logs/train_sequence/{BLOCK}.log",
    benchmark:
        f"results/benchmarks/train_sequence/{BLOCK}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        code=library_code("train_sequence.py"),
        model=lambda wc: canonical(STUDY.sequence_run(wc).variant.spec()),
        settings=lambda wc: canonical(STUDY.sequence_run(wc).regime.settings()),
        seed=config["seed"],
        replicas=lambda wc: STUDY.text_block(wc).spec(),
        run=lambda wc: canonical(STUDY.sequence_run(wc).columns()),
    script:
        rule_script("train_sequence")


rule evaluate_sequence:
    input:
        checkpoint=rules.train_sequence.output.checkpoint,
        corpus=rules.prepare_text.output.corpus,
    output:
        evaluation=f"{SEQUENCE_RUNS_DIR}/{BLOCK}/evaluation.npz",
    log:
        f"results/logs/evaluate_sequence/{BLOCK}.log",
    benchmark:
        f"results/benchmarks/evaluate_sequence/{BLOCK}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        code=library_code("evaluate_sequence.py"),
    script:
        rule_script("evaluate_sequence")


rule analyze_sequences:
    input:
        evaluations=sequence_files("evaluation.npz"),
        histories=sequence_files("history.parquet"),
    output:
        **table_outputs("analyze_sequences"),
    log:
        "results/logs/analyze_sequences.log",
    benchmark:
        "results/benchmarks/analyze_sequences.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=library_code("analyze_sequences.py"),
        runs=all_sequence_run_columns(),
    script:
        rule_script("analyze_sequences")
