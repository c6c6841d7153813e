"""Rule evaluate_sequence: one block of a language model's replicas on the pool, held-out and
typo'd documents, facts and canaries (memlab.engine.sequence_runs)."""

from memlab.checkpoint import load_checkpoint
from memlab.engine.sequence_runs import evaluate_sequence_run
from memlab.io import load_npz, save_npz
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    arrays = evaluate_sequence_run(load_checkpoint(sm.input.checkpoint), load_npz(sm.input.corpus))
    save_npz(sm.output.evaluation, **arrays)
    log(
        f"held-out loss {arrays['heldout_loss'].mean():.3f} nats/token, pool documents it trained "
        f"on {arrays['doc_loss'][arrays['train_mask']].mean():.3f}; facts recalled "
        f"{arrays['fact_correct'].mean():.3f}"
    )
