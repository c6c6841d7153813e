"""Rule removal_choice: rank a first-stage run's pool for the removal experiment (memorized and
high-influence examples first) from that run's bank."""

from memlab.analysis import bank, removal
from memlab.analysis.influence import Thresholds
from memlab.analysis.memorization import used_replicas
from memlab.io import load_npz, save_npz
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    first = bank.concat_blocks([load_npz(f) for f in sm.input.evaluations], str(sm.output[0]))
    usable = used_replicas(sm.params.run, first)
    choice = removal.choose(first, usable, Thresholds(**sm.params.influence))
    log(
        f"{int(usable.sum())} usable replicas; {int(choice['in_pair'].sum())} pool examples in "
        f"{int(choice['pairs'].sum())} high-influence pairs; top 10: {choice['ranking'][:10]}"
    )
    save_npz(sm.output[0], **choice)
