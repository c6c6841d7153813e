"""Where a train job runs: ``training.device`` (``cpu``, ``cuda`` or ``auto``), resolved on the
machine that trains, never at planning time (a SLURM head node has no GPU; its compute nodes may).

``cpu`` (the default) keeps a study's bytes independent of the machine. ``cuda`` and ``auto`` run
the whole engine on the first CUDA GPU: data, stacked weights, optimizer state, random streams of
dropout, the per-epoch evaluation and the training-dynamics sums; checkpoints are written from the
CPU, so the evaluate jobs read them anywhere. Where torch sees no GPU (the CPU build of torch, no
driver), ``cuda`` falls back to the CPU with a message saying so, and ``auto`` quietly does.

Determinism on a GPU (PyTorch's "Reproducibility" notes): cuBLAS needs a fixed workspace
(``CUBLAS_WORKSPACE_CONFIG=:4096:8``, set before its first use), every op must take its
deterministic algorithm (``torch.use_deterministic_algorithms(True)``: an op without one raises
instead of varying), cuDNN must not pick kernels by timing (``cudnn.benchmark = False``), and
TF32 stays off so float32 means float32. Then a block trains to the same bytes on the same GPU
model, driver and torch; across devices (CPU vs GPU, or two GPU models) float rounding differs, so
the device each block trained on is recorded in its checkpoint and train log.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(setting: str, log: Callable[[str], None] = print) -> torch.device:
    """The device ``training.device`` names on this machine (see the module docstring)."""
    if setting not in DEVICES:
        raise ValueError(f"training.device must be one of {', '.join(DEVICES)}, got {setting!r}")
    if setting == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        deterministic_cuda()
        return torch.device("cuda")
    if setting == "cuda":
        log(
            "memlab: training.device is cuda, but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); training on the "
            "CPU. Set training.device: auto to pick the GPU only where there is one."
        )
    return torch.device("cpu")


def deterministic_cuda() -> None:
    """The settings a GPU needs to train to the same bytes on every run (module docstring)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
