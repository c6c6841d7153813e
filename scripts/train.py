"""Rule train: train all replicas of one configuration at once; checkpoint plus history."""

from memlab import data
from memlab.analysis import with_run
from memlab.checkpoint import save_checkpoint
from memlab.io import atomic_path, load_npz
from memlab.runs import train_run
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    split = data.load_split(sm.input.split)
    labels = load_npz(sm.input.labels)
    members = load_npz(sm.input.subsets)["members"]
    state, arrays, history = train_run(
        split,
        labels["y_pool"],
        labels["flipped"],
        members,
        sm.params.model,
        sm.params.settings,
        seed=sm.params.seed,
        log=log,
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
        },
    )
    with atomic_path(sm.output.history) as tmp:
        with_run(history, sm.params.run).to_parquet(tmp, index=False)
