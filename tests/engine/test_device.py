"""training.device: resolved on the machine that trains; without a GPU, cuda falls back to the CPU
and says so, auto quietly does. (The GPU path itself is benchmarked on a GPU machine where one is
lent: benchmarks/README.md.)"""

from __future__ import annotations

import pytest
import torch

from memlab.engine.device import resolve_device


def test_cpu_is_the_cpu():
    said = []
    assert resolve_device("cpu", said.append) == torch.device("cpu") and not said


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_trains_on_the_cpu_and_says_so():
    said = []
    assert resolve_device("cuda", said.append) == torch.device("cpu")
    assert len(said) == 1 and "training.device is cuda" in said[0]
    assert "training on the CPU" in said[0] and "training.device: auto" in said[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_auto_without_a_gpu_is_the_cpu_quietly():
    said = []
    assert resolve_device("auto", said.append) == torch.device("cpu") and not said


def test_an_unknown_device_is_an_error():
    with pytest.raises(ValueError, match=r"training\.device must be one of cpu, cuda, auto"):
        resolve_device("tpu")
