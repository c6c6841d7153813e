"""Rule subsample_text: the documents each replica of one block trains on (complementary
halves that keep a fact's or canary's copies together, memlab.data.sequences)."""

import numpy as np

from memlab.data import sequences
from memlab.io import load_npz, save_npz
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    p = snakemake.params
    corpus = load_npz(snakemake.input.corpus)
    replicas = range(*p.replicas)
    members = sequences.document_subsets(corpus["group"], corpus["doc_kind"], replicas, p.seed)
    log(
        f"replicas {replicas.start}-{replicas.stop - 1}: {int(members[0].sum())} of "
        f"{members.shape[1]} documents each"
    )
    save_npz(snakemake.output.subsets, members=members, replica=np.asarray(replicas))
