"""Rule train: train one block of replicas of a configuration at once; checkpoint plus history."""

from pathlib import Path

from memlab.checkpoint import save_checkpoint
from memlab.columnar import write_parquet
from memlab.data import datasets as data
from memlab.engine.device import resolve_device
from memlab.engine.resume import Resume
from memlab.engine.runs import train_run
from memlab.io import load_npz
from memlab.plan.kinds import variant_from_spec
from memlab.plan.study import Regime, with_run_columns
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    split = data.load_split(sm.input.split)
    labels = load_npz(sm.input.labels)
    members = load_npz(sm.input.subsets)["members"]
    # From the config, not params: how often the state is saved or progress is logged never
    # changes the results, so changing either must not retrain anything.
    every = sm.config["training"]["resume_every"]
    variant = variant_from_spec(sm.params.model)
    regime = None
    if variant.trains:
        log_every = sm.config["training"]["log_every"]
        regime = Regime.from_settings(sm.wildcards.regime, sm.params.settings, log_every)
    # Operational too (training.device): resolved here, on the machine that trains.
    device = resolve_device(sm.config["training"]["device"], log)
    state_file = Path(sm.output.checkpoint).with_name("train-state.pt")
    resume = Resume(state_file, every) if every else None
    state, arrays, history = train_run(
        split,
        labels["y_pool"],
        labels["flipped"],
        members,
        variant,
        regime,
        seed=sm.params.seed,
        replicas=range(*sm.params.replicas),
        resume=resume,
        log=log,
        device=device,
        gradient_every=sm.params.gradient_every,
    )
    save_checkpoint(
        sm.output.checkpoint,
        state=state,
        arrays=arrays,
        settings={
            "model": sm.params.model,
            "settings": sm.params.settings,
            "seed": sm.params.seed,
            "wildcards": dict(sm.wildcards),
            # Where it trained, off the CPU only (a CPU checkpoint's bytes are as before).
            **({"device": str(device)} if device.type != "cpu" else {}),
        },
    )
    # As columns through pyarrow: the job never imports pandas (memlab.columnar).
    write_parquet(sm.output.history, with_run_columns(history, sm.params.run))
    # Only now, with both outputs in place, is the resumable state no longer needed.
    for done in Resume(state_file).files():
        done.unlink(missing_ok=True)
