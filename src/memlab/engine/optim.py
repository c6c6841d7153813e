"""AdamW for stacked replicas, on PyTorch's fused AdamW kernel.

Why not ``torch.optim.AdamW(fused=True)``: it runs the same kernel (``torch._fused_adamw_``), but
building any ``torch.optim`` optimizer imports ``torch._dynamo``, a fixed cost per training job
(measured in ``benchmarks/README.md``), and its state is keyed by parameter objects, which makes
cutting finished replicas out of the stack awkward. Here the state is plain lists of tensors with
the replica as leading dimension, so :meth:`keep` slices it and :meth:`state_dict` is plain data.
``tests/engine/test_train.py`` checks it matches ``torch.optim.AdamW`` exactly. Adam is elementwise:
one fused step over the stack is R independent optimizers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


class StackedAdamW:
    def __init__(
        self,
        params: Iterable[torch.Tensor],
        *,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float],
        eps: float,
    ) -> None:
        # No defaults: a run's betas and eps are its regime's (the config schema's defaults).
        self.params = list(params)
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # One step count per tensor is shared by its replicas: replicas leave the stack for good,
        # so every replica still in it has taken exactly this many steps.
        # On the parameters' device, as torch.optim's fused AdamW keeps them.
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor] | None = None) -> None:
        """One step from the parameters' ``.grad`` or from ``grads`` (same order as params)."""
        torch._foreach_add_(self.steps, 1)
        if grads is None:
            grads = [p.grad for p in self.params if p.grad is not None]
            if len(grads) != len(self.params):
                raise RuntimeError("step() before backward(): a parameter has no gradient")
        torch._fused_adamw_(
            self.params,
            grads,
            self.exp_avg,
            self.exp_avg_sq,
            [],
            self.steps,
            amsgrad=False,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
        )

    def keep(self, params: Sequence[torch.Tensor], rows: torch.Tensor) -> None:
        """Continue with ``params`` (the model's sliced parameters) and the same rows of state."""
        self.params = list(params)
        self.exp_avg = [m[rows].clone() for m in self.exp_avg]
        self.exp_avg_sq = [v[rows].clone() for v in self.exp_avg_sq]

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        """The moments and step counts (plain tensors), for a resumable training state."""
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        """Continue from :meth:`state_dict`'s moments (``params`` are set by the caller)."""
        self.exp_avg, self.exp_avg_sq, self.steps = (
            state["exp_avg"],
            state["exp_avg_sq"],
            state["steps"],
        )
