"""Training dynamics per example: forgetting events and dataset cartography, accumulated online.

At the end of every epoch the engine evaluates each replica on its own training examples (eval
mode: no dropout). From that sequence of evaluations, per (replica, pool example):

- **forgetting events** (Toneva et al. 2019, "An empirical study of example forgetting during
  deep neural network learning", ICLR): transitions from correct to incorrect between consecutive
  evaluations. An example never classified correctly counts as forgotten once per evaluation
  (the reference code, github.com/mtoneva/example_forgetting ``sort_examples_by_forgetting``,
  adds ``npresentations`` for a never-learned example). Toneva et al. record correctness at each
  minibatch presentation in train mode; memlab at the end of each epoch in eval mode. With one
  presentation per epoch the sequences have the same length; the train-mode forward differs by
  dropout only.
- **cartography** (Swayamdipta et al. 2020, "Dataset Cartography", EMNLP): over the epochs,
  ``confidence`` = mean probability of the given label, ``variability`` = its standard deviation
  (population, ``np.std`` as in their code, github.com/allenai/cartography), ``correctness`` =
  share of epochs classified correctly.

Nothing per epoch is stored: running counts and sums ([R, n] each) are enough, so the state is
the same size whatever the number of epochs, travels in the resumable loop state and ends in
the checkpoint as a few compact arrays (:func:`finish`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch only where the accumulators are made: reading banks needs none
    import torch

# The checkpoint / evaluation arrays this module writes, and their meaning (see ``finish``).
ARRAYS = (
    "dyn_epochs",
    "dyn_correct",
    "dyn_forgotten",
    "dyn_learned",
    "dyn_confidence",
    "dyn_variability",
    "dyn_loss_sum",
    "dyn_final_loss",
    "dyn_learning_time",
    "dyn_gradient_evaluations",
    "dyn_input_gradient_sq_sum",
    "dyn_tracin",
)
NEVER = -1  # dyn_learning_time of an example not classified correctly at the last evaluation


def start(
    replicas: int, n_pool: int, device: str | torch.device = "cpu", *, gradients: bool = False
) -> dict[str, torch.Tensor]:
    """Empty accumulators for ``replicas`` replicas over a pool of ``n_pool`` examples, on the
    training's device; ``gradients``: also those of :func:`update_gradients`."""
    import torch

    def zeros(dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros((replicas, n_pool), dtype=dtype, device=device)

    return {
        "epochs": zeros(torch.int32),  # evaluations seen
        "correct": zeros(torch.int32),  # of them correct
        "forgotten": zeros(torch.int32),  # correct -> incorrect transitions
        "last": zeros(torch.bool),  # correct at the last evaluation
        "p_sum": zeros(torch.float64),  # sum of p(given label)
        "p_sq": zeros(torch.float64),  # sum of its squares
        "loss_sum": zeros(torch.float64),  # sum of the loss (CSL)
        "loss_last": zeros(torch.float32),  # the last evaluation's loss
        # The evaluation (from 0) that began the current run of correct ones; NEVER after a
        # wrong one.
        "streak": torch.full((replicas, n_pool), NEVER, dtype=torch.int32, device=device),
    } | (
        {
            "grad_evals": zeros(torch.int32),  # evaluations with gradients
            "grad_x_sq": zeros(torch.float64),  # sum of ||grad_x loss||^2
            "tracin": zeros(torch.float64),  # sum of lr ||grad_w loss||^2
        }
        if gradients
        else {}
    )


def update(
    acc: dict[str, torch.Tensor],
    replica: torch.Tensor,
    index: torch.Tensor,
    correct: torch.Tensor,
    loss: torch.Tensor,
) -> None:
    """Add one evaluation: row ``k`` of ``index`` / ``correct`` / ``loss`` ([rows, m]) holds
    replica ``replica[k]``'s pool indices, correctness and loss ``-log p(given label)``."""
    at = (replica[:, None].expand_as(index), index)
    # A run of correct evaluations goes on, or starts now (at the evaluation's index).
    started = acc["streak"][at].where(acc["last"][at], acc["epochs"][at])
    acc["streak"][at] = started.where(correct, NEVER)
    acc["forgotten"][at] += (acc["last"][at] & ~correct).int()
    acc["last"][at] = correct
    acc["epochs"][at] += 1
    acc["correct"][at] += correct.int()
    p = (-loss).exp().double()  # as before CSL: the same confidence bits
    acc["p_sum"][at] += p
    acc["p_sq"][at] += p * p
    acc["loss_sum"][at] += loss.double()
    acc["loss_last"][at] = loss.float()


def update_gradients(
    acc: dict[str, torch.Tensor],
    replica: torch.Tensor,
    index: torch.Tensor,
    input_sq: torch.Tensor,
    weight_sq: torch.Tensor,
    lr: float,
) -> None:
    """Add one evaluation's squared gradient norms ([rows, m], as :func:`update`'s arrays): the
    cumulative loss sensitivity and TracIn self-influence (memlab.engine.input_gradients)."""
    at = (replica[:, None].expand_as(index), index)
    acc["grad_evals"][at] += 1
    acc["grad_x_sq"][at] += input_sq.double()
    acc["tracin"][at] += lr * weight_sq.double()


def finish(acc: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The per (replica, example) statistics, as stored: ``dyn_epochs`` (evaluations; 0 where the
    replica did not train on the example), ``dyn_correct`` (evaluations correct),
    ``dyn_forgotten`` (forgetting events, never-learned not yet counted: see
    :func:`forgetting_events`), ``dyn_learned`` (ever correct), ``dyn_confidence`` and
    ``dyn_variability`` (mean and population std of p(given label); NaN where not seen),
    ``dyn_loss_sum`` (CSL), ``dyn_final_loss`` (NaN where not seen) and ``dyn_learning_time``
    (:data:`NEVER` where never learned for good, and where not seen)."""
    acc = {k: v.cpu() for k, v in acc.items()}  # the training's device may be a GPU
    n = acc["epochs"].double()
    seen = acc["epochs"].numpy() > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (acc["p_sum"] / n).numpy()
        var = np.maximum((acc["p_sq"] / n).numpy() - mean**2, 0.0)
    return {
        "dyn_epochs": acc["epochs"].numpy().copy(),
        "dyn_correct": acc["correct"].numpy().copy(),
        "dyn_forgotten": acc["forgotten"].numpy().copy(),
        "dyn_learned": (acc["correct"] > 0).numpy(),
        "dyn_confidence": mean.astype(np.float32),
        "dyn_variability": np.sqrt(var).astype(np.float32),
        "dyn_loss_sum": acc["loss_sum"].numpy().copy(),
        "dyn_final_loss": np.where(seen, acc["loss_last"].numpy(), np.float32(np.nan)),
        "dyn_learning_time": acc["streak"].numpy().copy(),
    } | (
        {
            "dyn_gradient_evaluations": acc["grad_evals"].numpy().copy(),
            "dyn_input_gradient_sq_sum": acc["grad_x_sq"].numpy().copy(),
            "dyn_tracin": acc["tracin"].numpy().copy(),
        }
        if "grad_evals" in acc
        else {}
    )


def forgetting_events(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """[R, n] float: Toneva et al.'s count per (replica, example), a never-learned example
    counting one per evaluation; NaN where the replica did not train on the example."""
    epochs = arrays["dyn_epochs"]
    count = np.where(arrays["dyn_learned"], arrays["dyn_forgotten"], epochs).astype(np.float64)
    return np.where(epochs > 0, count, np.nan)


def correctness(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """[R, n] float: share of evaluations correct; NaN where not trained on."""
    epochs = arrays["dyn_epochs"]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(epochs > 0, arrays["dyn_correct"] / epochs, np.nan)


def cumulative_loss(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """[R, n] float: CSL, the sum of the example's losses over the evaluations; NaN where the
    replica did not train on the example."""
    return np.where(arrays["dyn_epochs"] > 0, arrays["dyn_loss_sum"], np.nan)


def learning_time(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """[R, n] float: the learning time, with a never-learned example counted as learned one
    evaluation after the last (so that it ranks last, as "never" should); NaN where not seen."""
    epochs = arrays["dyn_epochs"]
    t = arrays["dyn_learning_time"]
    return np.where(epochs > 0, np.where(t == NEVER, epochs, t), np.nan).astype(np.float64)


def gradient_sum(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """[R, n] float: a gradient sum (``dyn_input_gradient_sq_sum``, ``dyn_tracin``); NaN where
    no gradient evaluation was made (not trained on, or stopped before the first)."""
    return np.where(arrays["dyn_gradient_evaluations"] > 0, arrays[name], np.nan)
