"""One optimisation step: the batch cut into micro-batches, their targets, forward, losses, backward, update.

The step is that of the whole global batch whatever ``train.accumulate_steps`` is: the loss
normalisers are those of the whole batch, DDP all-reduces the gradients once (in the last
micro-batch's backward), and clipping, the optimizer and the schedule act once.

A transductive run (``train.transductive``) self-trains from ``train.transductive_start`` on:
each micro-batch's unseen pixels (or every ignored one, ``train.transductive_pixels: ignored``)
are first labelled by the model itself, and the step trains on every class's name; with
``train.transductive_schedule: restart`` AdamW's moments are dropped at the first such step, as
a fresh run loaded from the inductive checkpoint has none (:mod:`splitmatch.train.transductive`).
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.parallel import DistributedDataParallel

from splitmatch.config import ExperimentConfig, LossConfig
from splitmatch.data.classes import ClassSplit
from splitmatch.device import mixed_precision
from splitmatch.errors import NonFiniteValuesError
from splitmatch.inference.segmentation import candidate_scoring
from splitmatch.losses.criterion import SetCriterion
from splitmatch.matching.matcher import HungarianMatcher, SplitMatcher
from splitmatch.model.segmentor import SplitMatchSegmentor
from splitmatch.train.micro_batches import DivergenceWatch, split_batch
from splitmatch.train.optim import PolyWarmupSchedule
from splitmatch.train.targets import build_targets, move_targets, pseudo_view
from splitmatch.train.transductive import (
    first_self_training_step,
    marks_unseen,
    padding_mask,
    schedule_restart,
    self_training_labels,
    unseen_predictions,
)


class NonFiniteLossError(NonFiniteValuesError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def build_criterion(loss: LossConfig) -> SetCriterion:
    """The criterion with the matcher ``loss.matching`` names."""
    if loss.matching == "split":
        matcher = SplitMatcher(loss.cost_class, loss.cost_bce, loss.cost_dice, loss.cost_embed, loss.num_points)
    else:
        matcher = HungarianMatcher(loss.cost_class, loss.cost_bce, loss.cost_dice, loss.num_points)
    weights = {
        "class": loss.weight_class,
        "bce": loss.weight_bce,
        "dice": loss.weight_dice,
        "embed": loss.weight_embed,
        "candidate": loss.candidate_weight,
        "distill": loss.candidate_distillation,
    }
    return SetCriterion(
        matcher,
        weights,
        loss.no_object_weight,
        loss.num_points,
        loss.oversample_ratio,
        loss.importance_sample_ratio,
        loss.deep_supervision,
        loss.candidate_sampling,
        loss.distillation_temperature,
    )


class TrainingStep:
    """Runs training steps of one model; calling it with a collated batch makes one step.

    Args:
        model: the segmentor (its parameters are what is clipped).
        network: what is called forward: ``model``, or its DDP wrapper under ``torchrun``, either
            possibly compiled (``train.compile``).
        classes: the dataset's classes; only the seen ones' names reach the model (inductive), every
            class's name from the first self-training step of a transductive run on.
        use_pseudo_masks: read the batch's pseudo masks (Split Matching) or not (the baseline).
        advice: what an error about divergence tells the user to do.
    """

    def __init__(
        self,
        model: SplitMatchSegmentor,
        network: torch.nn.Module,
        criterion: SetCriterion,
        optimizer: torch.optim.Optimizer,
        schedule: PolyWarmupSchedule,
        scaler: torch.amp.GradScaler,
        config: ExperimentConfig,
        classes: ClassSplit,
        device: torch.device,
        use_pseudo_masks: bool,
        advice: str,
    ) -> None:
        self.model, self.network, self.criterion = model, network, criterion
        self.optimizer, self.schedule, self.scaler = optimizer, schedule, scaler
        self.config, self.classes, self.device = config, classes, device
        self.use_pseudo_masks = use_pseudo_masks
        self.advice = advice
        self.class_embeddings = model.encode_classes([classes.texts[i] for i in classes.seen_ids])  # names + synonyms
        self.train_class_ids = list(classes.seen_ids)
        self.self_training_from = first_self_training_step(config.train)
        self.self_training = False
        self.self_trained_pixels = 0  # pixels the last step labelled itself (this process's share)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.query_group = model.query_decoder.query_group.cpu()
        self.watch = DivergenceWatch(device)
        inner = getattr(network, "_orig_mod", network)  # under torch.compile (train.compile)
        self.ddp = inner if isinstance(inner, DistributedDataParallel) else None

    def __call__(self, batch: dict, done: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Step number ``done`` (1-based) on ``batch``; returns the summed loss terms and the gradient norm."""
        micro_batches = split_batch(batch, self.config.train.accumulate_steps)
        self.self_trained_pixels = 0
        if self.self_training_from is not None and done >= self.self_training_from:
            self.start_self_training()
            if done == self.self_training_from and schedule_restart(self.config.train) is not None:
                self.optimizer.state.clear()  # a fresh AdamW, as ZegCLIP's self-training run starts with
            labelled = [self.with_self_training_labels(part) for part in micro_batches]
            self.self_trained_pixels = sum(
                int((new["label"] != old["label"]).sum()) for new, old in zip(labelled, micro_batches)
            )
            micro_batches = labelled
        # Built on the CPU: no device synchronisation for unique() and the like.
        targets = [move_targets(self.targets(part), self.device) for part in micro_batches]
        normalisers = self.criterion.normalisers([t for part in targets for t in part], self.query_group, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        terms: dict[str, torch.Tensor] = {}
        for index, (part, part_targets) in enumerate(zip(micro_batches, targets)):
            last = index == len(micro_batches) - 1
            # DDP all-reduces the gradients once per step, in the last micro-batch's backward.
            with contextlib.nullcontext() if self.ddp is None or last else self.ddp.no_sync():
                with mixed_precision(self.device, self.config.train.amp):
                    outputs = self.network(part["image"].to(self.device, non_blocking=True), self.class_embeddings)
                try:
                    losses = self.criterion(outputs, part_targets, normalisers, self.class_embeddings)
                except FloatingPointError as error:  # the matcher refuses non-finite costs
                    # Only this rank may have stopped: name its own first bad step, with no collective.
                    bad = self.watch.first_bad_step_here()
                    if bad is not None:
                        raise NonFiniteLossError(
                            f"loss became non-finite at step {bad[0]} ({bad[1]}); stopping. {self.advice}"
                        ) from None
                    raise NonFiniteLossError(f"training diverged at step {done}: {error}. {self.advice}") from None
                self.scaler.scale(losses["loss"]).backward()
            for name, value in losses.items():
                terms[name] = terms[name] + value.detach() if name in terms else value.detach()
        self.watch.update(done, terms)
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.config.train.grad_clip or float("inf"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        return terms, grad_norm

    def start_self_training(self) -> None:
        """From now on the model is given every class's name, in dataset order (transductive)."""
        if self.self_training:
            return
        self.self_training = True
        self.class_embeddings = self.model.encode_classes(list(self.classes.texts))
        self.train_class_ids = list(range(self.classes.num_classes))

    @torch.no_grad()
    def with_self_training_labels(self, part: dict) -> dict:
        """The micro-batch with its unseen (or every ignored), non-padding pixels labelled by the model
        itself (:mod:`splitmatch.train.transductive`); a forward without gradients, on the host after."""
        images = part["image"].to(self.device, non_blocking=True)
        with mixed_precision(self.device, self.config.train.amp):
            outputs = self.model(images, self.class_embeddings)
        size = tuple(part["label"].shape[-2:])
        ids, share = unseen_predictions(
            outputs,
            self.classes.unseen_ids,
            size,
            self.model.query_decoder.temperature,
            candidate_scoring(self.config),
        )
        if "source_rows" not in part or "source_cols" not in part:
            raise ValueError("a self-training batch must tell padding apart (source_rows, source_cols)")
        padding = padding_mask(part["source_rows"], part["source_cols"])
        unseen = None
        if marks_unseen(self.config.train):
            if "unseen_mask" not in part:
                raise ValueError("train.transductive_pixels=unseen needs batches that mark unseen pixels (unseen_mask)")
            unseen = part["unseen_mask"]
        labels = self_training_labels(
            part["label"],
            padding,
            ids.cpu(),
            share.cpu(),
            self.classes.ignore_index,
            self.config.train.transductive_threshold,
            unseen,
        )
        # Pseudo masks keep the unannotated region the dataset gave them (the dense maps, already
        # clipped to it), not the pixels just labelled: the candidate queries keep their targets.
        return {
            key: value for key, value in part.items() if key not in ("pseudo_grid", "pseudo_rows", "pseudo_cols")
        } | {"label": labels}

    def targets(self, part: dict) -> list[dict]:
        """One micro-batch's targets (:func:`splitmatch.train.targets.build_targets`), on the CPU."""
        return build_targets(
            part["label"],
            self.train_class_ids,
            part.get("pseudo_index") if self.use_pseudo_masks else None,
            part.get("pseudo_embeddings"),
            ignore_index=self.classes.ignore_index,
            min_pseudo_area=self.config.pseudo.min_crop_area,
            # The pseudo-index maps travel to the device as their cached grid (a few MiB per step),
            # which the device clips to the ignored pixels again; unclipped (an ablation), whole.
            pseudo_view=pseudo_view(part) if self.use_pseudo_masks and self.config.pseudo.clip_to_unannotated else None,
        )

    def stop_if_diverged(self) -> None:
        """Raises :class:`NonFiniteLossError` naming the first step (on any process) whose loss was not finite."""
        bad = self.watch.first_bad_step()
        if bad is not None:
            raise NonFiniteLossError(f"loss became non-finite at step {bad[0]} ({bad[1]}); stopping. {self.advice}")
