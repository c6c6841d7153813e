"""Operations, apart from the science: versioning results with DVC, Snakemake's locks, the
config pre-check of ``./run.sh``. Nothing in :mod:`memlab`'s science modules imports these."""
