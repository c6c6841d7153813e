"""Checkpoints: round trip, and refusal of truncated, foreign or malicious files."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from memlab.checkpoint import load_checkpoint, save_checkpoint
from memlab.io import MemlabInputError


def _save(path):
    save_checkpoint(
        path,
        state={"w": torch.arange(6.0).reshape(2, 3)},
        settings={"model": {"kind": "mlp"}},
        arrays={"m": np.eye(2, dtype=bool)},
    )


def test_round_trip(tmp_path):
    _save(tmp_path / "c.pt")
    c = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(c["state"]["w"], torch.arange(6.0).reshape(2, 3))
    assert c["arrays"]["m"].dtype == bool and c["settings"]["model"] == {"kind": "mlp"}
    assert c["settings"]["software"]["torch"] == torch.__version__
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    _save(path)
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(MemlabInputError, match=r"c\.pt.*\./run\.sh study --forcerun .*c\.pt"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "memlab-checkpoint/1", "state": _Evil()}, path)
    with pytest.raises(MemlabInputError, match=r"evil\.pt"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    path.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(MemlabInputError):
        load_checkpoint(path)


def test_foreign_torch_file_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(MemlabInputError, match="not a memlab-checkpoint/1"):
        load_checkpoint(tmp_path / "other.pt")
