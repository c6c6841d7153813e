"""Rule prepare_text: a text dataset's documents as token rows (memlab.data.sequences)."""

import numpy as np

from memlab.data import sequences
from memlab.io import save_npz
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params
    arrays = sequences.prepare(p.dataset, snakemake.wildcards.dataset, p.test_fraction, log=log)
    kinds, counts = np.unique(arrays["doc_kind"], return_counts=True)
    log(
        f"pool documents {dict(zip(kinds.tolist(), counts.tolist(), strict=True))}; "
        f"{len(arrays['heldout'])} held out; vocabulary {len(arrays['vocabulary'])} tokens; "
        f"{len(arrays['fact_repetitions'])} facts; {len(arrays['canary_repetitions'])} canaries, "
        f"{len(arrays['reference_tokens'])} references"
    )
    save_npz(snakemake.output.corpus, **arrays)
