"""AdamW with learning-rate groups and the poly schedule with linear warm-up (mmseg semantics)."""

from __future__ import annotations

import torch

from splitmatch.config import TrainConfig
from splitmatch.model.segmentor import SplitMatchSegmentor
from splitmatch.train.transductive import schedule_restart


def build_optimizer(model: SplitMatchSegmentor, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; CLIP stays frozen.

    Groups: prompts and heads at ``lr * head_lr_multiplier``; norms, biases, embeddings of
    queries and the no-object embedding without weight decay (as ZegCLIP and Mask2Former); the
    visual prompts with it only when ``config.decay_prompts``.
    """
    base = config.lr * config.head_lr_multiplier
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_prompt = name.startswith("image_encoder.prompts")
        if is_prompt:
            (decay if config.decay_prompts else no_decay).append(param)
        elif param.ndim <= 1 or "norm" in name or "query_feat" in name or "query_pos" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay, "lr": base},
        {"params": no_decay, "weight_decay": 0.0, "lr": base},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=base)


class PolyWarmupSchedule:
    """``lr(t) = (base - min) * (1 - t / T) ** power + min``, times a linear warm-up factor.

    During the first ``warmup`` steps the factor rises from ``warmup_ratio`` to 1, as in
    mmcv's ``warmup='linear'``. With ``restart_at`` the schedule starts again, warm-up included,
    once that many steps are done, over the ``total_steps - restart_at`` left (as a run loaded
    from a checkpoint with a schedule of its own: ZegCLIP's transductive self-training). Stateless
    apart from the step, so resuming needs only that.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        power: float,
        min_lr: float,
        warmup_steps: int,
        warmup_ratio: float,
        restart_at: int | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.restart_at = restart_at
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.total_steps, self.power, self.min_lr = total_steps, power, min_lr
        self.warmup_steps, self.warmup_ratio = warmup_steps, warmup_ratio
        self.step_count = 0
        self._apply()

    def factor_lr(self, base_lr: float, step: int) -> float:
        total = self.total_steps
        if self.restart_at is not None and step >= self.restart_at:
            step, total = step - self.restart_at, total - self.restart_at
        progress = min(step, total) / max(total, 1)
        min_lr = min(self.min_lr, base_lr)
        lr = (base_lr - min_lr) * (1 - progress) ** self.power + min_lr
        if step < self.warmup_steps:
            lr *= 1 - (1 - step / self.warmup_steps) * (1 - self.warmup_ratio)
        return lr

    def _apply(self) -> None:
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.factor_lr(base_lr, self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self._apply()


def build_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> PolyWarmupSchedule:
    """The config's schedule; a transductive run's restarts at self-training (``train.transductive_schedule``)."""
    return PolyWarmupSchedule(
        optimizer,
        config.iterations,
        config.poly_power,
        config.min_lr,
        config.warmup_iterations,
        config.warmup_ratio,
        restart_at=schedule_restart(config),
    )
