"""The names of a language model's evaluation arrays (memlab.engine.sequence_runs writes them,
memlab.analysis.bank concatenates the per-replica ones over blocks). A module of names alone, so
that what imports it runs none of the engine."""

WORD_SPLITS = ("in", "out", "heldout")
PER_REPLICA = (
    "doc_loss",
    "doc_accuracy",
    "heldout_loss",
    "heldout_accuracy",
    "typo_loss",
    "typo_accuracy",
    "fact_correct",
    "paraphrase_correct",
    *(f"word_{what}_{split}" for split in WORD_SPLITS for what in ("correct", "tokens")),
)
# The corpus arrays every block's evaluation repeats (the bank keeps them once).
SHARED = (
    "doc_kind",
    "doc_text",
    "pool_fact",
    "pool_canary",
    "doc_repetitions",
    "fact_repetitions",
    "recall_chance",
    "canary_repetitions",
    "typo_severity",
    "word_bucket_low",
    "word_bucket_high",
)
