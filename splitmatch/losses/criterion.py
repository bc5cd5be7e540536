"""The training objective: seen loss, candidate loss, deep supervision
(docs/method.md#split-matching-and-the-losses)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from splitmatch.distributed import all_reduce_sum, world_size
from splitmatch.losses.mask_losses import alignment_loss, dice_loss, distillation_loss, sigmoid_bce_loss
from splitmatch.matching.assignment import PairIndex
from splitmatch.matching.matcher import HungarianMatcher, Matching, pad_targets
from splitmatch.matching.point_sampling import point_sample, uncertain_point_coords
from splitmatch.matching.target_maps import TargetMaps


@dataclass
class LossNormalisers:
    """What the loss terms of one optimisation step are divided by.

    Each is a total over the step's whole global batch (every process, every micro-batch),
    clamped at 1 and shared out over the processes: DDP averages gradients over processes, so
    each process's loss is then its part of the single-process loss of the global batch, and
    micro-batches of one step add up to it. All are known from the targets before any forward.

    Attributes:
        num_masks: seen ground-truth masks (mask losses of seen queries).
        class_weight: the cross-entropy weights of all classified queries (1 for a matched query,
            the no-object weight for the others).
        num_candidates: matched candidate queries (candidate losses).
    """

    num_masks: torch.Tensor
    class_weight: torch.Tensor
    num_candidates: torch.Tensor


class SetCriterion(nn.Module):
    """``L = L_seen + lambda_u * L_cand``, summed over the last and every auxiliary read-out.

    * ``L_seen``: cross-entropy over seen classes + no-object (no-object weighted down) on the
      classified queries; BCE + dice on matched queries at importance-sampled points.
    * ``L_cand``: on matched candidate queries only, BCE + dice against the pseudo mask and the
      alignment ``1 - cos(z_i, e_k)``. Unmatched candidates get no loss at all, and candidates
      never get a seen-class cross-entropy: their regions may be unseen classes.
    * Optional (weight ``distill``, ``loss.candidate_distillation``): a calibration of matched
      candidates' class scores over the **seen** names, ``KL(softmax(cos(e_k, t)/T) ||
      softmax(cos(z_i, t)/tau))`` with ``T`` the teacher temperature (CLIP's own 0.01): the
      candidate learns the distribution CLIP gives its region, over names training may use.

    Normalisers (:class:`LossNormalisers`) are those of the whole global batch; pass them in when
    a step is split into micro-batches.

    Args:
        matcher: a :class:`HungarianMatcher` (baseline) or :class:`SplitMatcher` (method).
        weights: ``class``, ``bce``, ``dice``, ``embed``, ``candidate`` (lambda_u).
        no_object_weight: cross-entropy weight of the no-object class.
        num_points, oversample_ratio, importance_sample_ratio: mask-loss point sampling.
        deep_supervision: also supervise ``aux_outputs``.
        candidate_sampling: ``uniform`` or ``importance`` points for the candidate mask loss.
        teacher_temperature: ``T`` of the distillation term's teacher.
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        weights: dict[str, float],
        no_object_weight: float,
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        deep_supervision: bool = True,
        candidate_sampling: str = "uniform",
        teacher_temperature: float = 0.01,
    ) -> None:
        super().__init__()
        self.matcher = matcher
        self.weights = dict(weights)
        self.no_object_weight = no_object_weight
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.deep_supervision = deep_supervision
        self.candidate_sampling = candidate_sampling
        self.teacher_temperature = teacher_temperature

    def normalisers(self, targets: list[dict], query_group: torch.Tensor, device: torch.device) -> LossNormalisers:
        """The normalisers of a step from its targets alone, summed over processes (one all-reduce).

        A Hungarian assignment of ``N`` queries to ``M`` targets matches ``min(N, M)`` of them, so
        every count is known before the forward pass, from the targets' shapes.

        Args:
            targets: this process's targets of the whole step (all its micro-batches).
            query_group: ``[Q]``, 0 seen, 1 candidate (the host copy: no device synchronisation).
        """
        class_queries, candidate_queries = self.matcher.query_counts(query_group)
        masks = [len(t["labels"]) for t in targets]
        matched = [min(count, class_queries) for count in masks]
        class_weight = sum(m + self.no_object_weight * (class_queries - m) for m in matched)
        pseudo = [len(t["pseudo_ids"] if "pseudo_ids" in t else t.get("pseudo_masks", ())) for t in targets]
        candidates = sum(min(count, candidate_queries) for count in pseudo)
        totals = all_reduce_sum(torch.tensor([sum(masks), class_weight, candidates], device=device))
        shared = totals.clamp(min=1.0) / world_size()
        return LossNormalisers(shared[0], shared[1], shared[2])

    def class_loss(
        self, logits: torch.Tensor, matching: Matching, padded: dict, normaliser: torch.Tensor
    ) -> torch.Tensor:
        """Weighted cross-entropy of the classified queries against matched labels or no-object.

        Args:
            logits: ``[B, Q, C+1]``.
            padded: :func:`~splitmatch.matching.matcher.pad_targets` of the images.
            normaliser: the step's :attr:`LossNormalisers.class_weight`.
        """
        no_object = logits.shape[-1] - 1
        target = torch.full(logits.shape[:2], no_object, dtype=torch.int64, device=logits.device)
        pairs = matching.seen_index
        target[pairs.image, pairs.query] = padded["labels"][pairs.image, pairs.target]
        queries = matching.class_query_index
        weight = torch.ones(no_object + 1, device=logits.device)
        weight[no_object] = self.no_object_weight
        target = target[:, queries]  # [B, N]
        # log_softmax and a gather rather than F.cross_entropy: the same arithmetic, and its CUDA
        # backward is deterministic under torch.use_deterministic_algorithms (NLLLoss's is not).
        log_probs = logits[:, queries].float().log_softmax(-1)  # [B, N, C+1]
        per_query = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1) * weight[target]
        return per_query.sum() / normaliser

    def mask_loss(
        self, pred_masks: torch.Tensor, masks: TargetMaps, pairs: PairIndex, importance: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE and dice sums of matched pairs.

        Args:
            pred_masks: ``[B, Q, h, w]`` logits.
            masks: the targets the pairs index (``pad_targets(...)["masks"]`` or ``["pseudo"]``).
            pairs: the matched (image, query, target) pairs.
            importance: points concentrated where the prediction is uncertain (PointRend), else uniform.
        """
        if pairs.count == 0:
            zero = pred_masks.sum() * 0.0
            return zero, zero
        device = pred_masks.device
        src = pred_masks[pairs.image, pairs.query].unsqueeze(1).float()  # [N, 1, h, w]
        with torch.no_grad():
            if importance:
                coords = uncertain_point_coords(
                    src, self.num_points, self.oversample_ratio, self.importance_sample_ratio
                )
            else:
                coords = torch.rand(src.shape[0], self.num_points, 2, device=device)  # [N, P, 2]
            point_targets = masks.read_pairs(pairs.image, pairs.target, coords)  # [N, P], masks stay binary
        point_logits = point_sample(src, coords).squeeze(1)  # [N, P]
        return sigmoid_bce_loss(point_logits, point_targets), dice_loss(point_logits, point_targets)

    def layer_losses(
        self, outputs: dict, padded: dict, matching: Matching, normalisers: LossNormalisers
    ) -> dict[str, torch.Tensor]:
        """Unweighted, normalised loss terms of one read-out and its matching."""
        losses = {"class": self.class_loss(outputs["pred_logits"], matching, padded, normalisers.class_weight)}
        bce, dice = self.mask_loss(outputs["pred_masks"], padded["masks"], matching.seen_index)
        losses["bce"], losses["dice"] = bce / normalisers.num_masks, dice / normalisers.num_masks
        if matching.candidate is not None:
            num_matched = normalisers.num_candidates
            importance = self.candidate_sampling == "importance"
            pairs = matching.candidate_index
            cand_bce, cand_dice = self.mask_loss(outputs["pred_masks"], padded["pseudo"], pairs, importance)
            losses["cand_bce"], losses["cand_dice"] = cand_bce / num_matched, cand_dice / num_matched
            losses["cand_align"] = self._alignment(outputs, padded, matching.candidate_index) / num_matched
            if "teacher_logits" in padded:
                losses["cand_distill"] = self._distillation(outputs, padded, pairs) / num_matched
        return losses

    def _distillation(self, outputs: dict, padded: dict, pairs: PairIndex) -> torch.Tensor:
        logits = outputs["pred_logits"]
        if pairs.count == 0:
            return logits.sum() * 0.0
        student = logits[pairs.image, pairs.query, :-1]  # [N, C]: the seen classes, no-object left out
        teacher = padded["teacher_logits"][pairs.image, pairs.target]  # [N, C]
        return distillation_loss(student, teacher)

    def _alignment(self, outputs: dict, padded: dict, pairs: PairIndex) -> torch.Tensor:
        embeds = outputs["pred_embeds"]
        if pairs.count == 0:
            return embeds.sum() * 0.0
        chosen = embeds[pairs.image, pairs.query].float()  # [N, D]
        goals = padded["pseudo_embeddings"][pairs.image, pairs.target]  # [N, D] float
        return alignment_loss(chosen, goals)

    def forward(
        self,
        outputs: dict,
        targets: list[dict],
        normalisers: LossNormalisers | None = None,
        class_embeddings: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Computes every loss term.

        One device synchronisation per call, whatever the batch and the number of read-outs: the
        cost matrices of all read-outs travel to the host together for the Hungarian solves
        (:meth:`HungarianMatcher.match_readouts`).

        Args:
            outputs: the model's output dict (with ``aux_outputs``).
            targets: per image, as :func:`splitmatch.train.targets.build_targets` makes them.
            normalisers: the step's (:meth:`normalisers` of all its micro-batches' targets);
                ``None``: those of ``targets`` alone.
            class_embeddings: ``[C, D]``, the seen classes' text embeddings the model was given;
                needed by the distillation term (weight ``distill`` > 0) only.

        Returns:
            ``loss`` (the weighted total to back-propagate) and every unweighted term of the last
            read-out (``class``, ``bce``, ``dice``, ``cand_bce``, ``cand_dice``, ``cand_align``).
        """
        device = outputs["pred_logits"].device
        if normalisers is None:
            normalisers = self.normalisers(targets, outputs["query_group"], device)
        points = self.matcher.random_points(len(targets), device)
        padded = pad_targets(targets, points)  # once per call, shared by every read-out's matching
        if self.weights.get("distill", 0.0) > 0 and "pseudo_embeddings" in padded:
            if class_embeddings is None:
                raise ValueError("the distillation term needs the class embeddings the model was given")
            region = padded["pseudo_embeddings"]  # [B, K, D], normalised region embeddings
            padded["teacher_logits"] = region @ class_embeddings.to(region).t() / self.teacher_temperature
        readouts = [outputs] + (list(outputs.get("aux_outputs", [])) if self.deep_supervision else [])
        matchings = self.matcher.match_readouts(readouts, padded)
        total = outputs["pred_logits"].new_zeros(())
        last_terms: dict[str, torch.Tensor] = {}
        for index, (readout, matching) in enumerate(zip(readouts, matchings)):
            terms = self.layer_losses(readout, padded, matching, normalisers)
            total = total + self.weighted_total(terms)
            if index == 0:
                last_terms = terms
        result = {name: value.detach() for name, value in last_terms.items()}
        result["loss"] = total
        return result

    def weighted_total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        w = self.weights
        seen = w["class"] * terms["class"] + w["bce"] * terms["bce"] + w["dice"] * terms["dice"]
        if "cand_bce" not in terms:
            return seen
        candidate = w["bce"] * terms["cand_bce"] + w["dice"] * terms["cand_dice"] + w["embed"] * terms["cand_align"]
        if "cand_distill" in terms:
            candidate = candidate + w["distill"] * terms["cand_distill"]
        return seen + w["candidate"] * candidate
