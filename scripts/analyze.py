"""Rule analyze: gather every run into tidy study tables, with the per-example analyses
(memorization scores, membership inference, chance nulls) computed from the evaluations."""

import sys

from memlab import analysis, bank, corruption_error, evidence, influence
from memlab.data import split_reader
from memlab.io import atomic_path
from memlab.neighbours import PoolAgreement
from memlab.power import PowerGates
from memlab.registry import TABLES
from memlab.seeds import derive_seed
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    metrics = analysis.gather(sm.input.metrics)
    history = analysis.gather(sm.input.histories)
    log(
        f"{len(sm.params.runs)} runs in {len(sm.input.metrics)} blocks: {len(metrics)} metric "
        f"rows, {len(history)} history rows"
    )

    def evaluations():
        # Each run's blocks as one bank, one run at a time.
        return bank.read_runs(sm.input.evaluations, sm.params.runs)

    split_of = split_reader(sm.input.splits)
    agreement = PoolAgreement.from_split_paths(sm.input.splits, sm.params.agreement_k)
    gates = PowerGates(**sm.params.power)
    memorization, mem_summary = analysis.memorization_tables(evaluations(), agreement, gates)
    membership, roc, membership_slices = analysis.membership_tables(
        evaluations(), memorization, gates
    )
    examples, detectors = evidence.evidence_tables(
        evaluations(),
        memorization,
        evidence.true_labels_from_splits(sm.input.splits),
        agreement,
        gates,
    )
    # analysis.influence.enabled: false asks no influence question (no pairs, no summary rows).
    influence_settings = dict(sm.params.influence)
    asked = evaluations() if influence_settings.pop("enabled") else ()
    pairs, pair_summary = influence.influence_tables(
        asked, split_of, gates, influence.Thresholds(**influence_settings)
    )
    scored = int((mem_summary["status"] == "ok").sum()) if len(mem_summary) else 0
    log(f"memorization scores for {scored} runs; membership attacks: {len(membership)} rows")
    for warning in analysis.undertrained_warnings(mem_summary):
        log(warning)
        print(f"memlab: {warning}", file=sys.stderr)
    frames = {
        "metrics": metrics,
        "gap": analysis.generalization_gap(metrics),
        "robustness": analysis.robustness(metrics),
        "history": history,
        "summary": analysis.summarize(metrics),
        "noise_sweep": analysis.noise_sweep(metrics, history),
        "chance_null": analysis.chance_null(
            evaluations(), seed=derive_seed(sm.params.seed, "chance_null")
        ),
        "memorization": analysis.with_subpopulations(memorization, split_of),
        "memorization_summary": mem_summary,
        "example_correlations": analysis.example_correlations(memorization),
        "membership": membership,
        "membership_roc": roc,
        "evidence": analysis.with_subpopulations(examples, split_of, "index"),
        "influence_pairs": pairs,
        "influence_summary": pair_summary,
        "few_shot": analysis.few_shot(metrics),
        "recall": analysis.recall(metrics),
        "memory_effect": analysis.memory_effect(metrics),
        "long_tail": analysis.long_tail_accuracy(evaluations(), split_of),
        "detectors": detectors,
        "membership_slices": membership_slices,
    }
    for dataset, b in sm.params.corruption_baselines.items():
        log(
            f"corruption error on {dataset}: "
            + (b["reason"] or f"against {b['model']} / {b['regime']}")
        )
    frames["corruption_error"] = corruption_error.corruption_error_table(
        frames["robustness"],
        sm.params.corruption_baselines,
        seed=derive_seed(sm.params.seed, "corruption_error"),
    )
    for table in (t for t in TABLES if t.made_by == "analyze"):
        frame = frames[table.frame]
        with atomic_path(sm.output[table.name]) as tmp:
            if table.format == "parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False, float_format="%.6g")
