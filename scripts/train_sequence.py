"""Rule train_sequence: train one block of a language model's replicas; checkpoint plus history."""

from pathlib import Path

from memlab.checkpoint import save_checkpoint
from memlab.columnar import write_parquet
from memlab.engine.resume import Resume
from memlab.engine.sequence_runs import train_sequence_run
from memlab.io import load_npz
from memlab.plan.kinds import variant_from_spec
from memlab.plan.study import Regime, with_run_columns
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    corpus = load_npz(sm.input.corpus)
    members = load_npz(sm.input.subsets)["members"]
    # From the config, not params: how often the state is saved or progress is logged never
    # changes the results, so changing either must not retrain anything.
    every = sm.config["training"]["resume_every"]
    regime = Regime.from_settings(
        sm.wildcards.regime, sm.params.settings, sm.config["training"]["log_every"]
    )
    state_file = Path(sm.output.checkpoint).with_name("train-state.pt")
    state, arrays, history = train_sequence_run(
        corpus,
        members,
        variant_from_spec(sm.params.model),
        regime,
        seed=sm.params.seed,
        replicas=range(*sm.params.replicas),
        resume=Resume(state_file, every) if every else None,
        log=log,
    )
    settings = {
        "model": sm.params.model,
        "settings": sm.params.settings,
        "seed": sm.params.seed,
        "wildcards": dict(sm.wildcards),
    }
    save_checkpoint(sm.output.checkpoint, state=state, arrays=arrays, settings=settings)
    write_parquet(sm.output.history, with_run_columns(history, sm.params.run))
    # Only now, with both outputs in place, is the resumable state no longer needed.
    for done in Resume(state_file).files():
        done.unlink(missing_ok=True)
