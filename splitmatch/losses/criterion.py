"""The training objective: seen loss, candidate loss, deep supervision
(docs/method.md#split-matching-and-the-losses)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from splitmatch.distributed import all_reduce_sum, world_size
from splitmatch.losses.mask_losses import alignment_loss, dice_loss, sigmoid_bce_loss
from splitmatch.matching.matcher import HungarianMatcher, Matching, Pairs, pad_targets
from splitmatch.matching.point_sampling import point_sample, sample_target_masks, uncertain_point_coords


class SetCriterion(nn.Module):
    """``L = L_seen + lambda_u * L_cand``, summed over the last and every auxiliary read-out.

    * ``L_seen``: cross-entropy over seen classes + no-object (no-object weighted down) on the
      classified queries; BCE + dice on matched queries at importance-sampled points.
    * ``L_cand``: on matched candidate queries only, BCE + dice against the pseudo mask and the
      alignment ``1 - cos(z_i, e_k)``. Unmatched candidates get no loss at all, and candidates
      never get a seen-class cross-entropy: their regions may be unseen classes.

    Normalisers (number of seen masks, number of matched candidates) are summed over processes.

    Args:
        matcher: a :class:`HungarianMatcher` (baseline) or :class:`SplitMatcher` (method).
        weights: ``class``, ``bce``, ``dice``, ``embed``, ``candidate`` (lambda_u).
        no_object_weight: cross-entropy weight of the no-object class.
        num_points, oversample_ratio, importance_sample_ratio: mask-loss point sampling.
        deep_supervision: also supervise ``aux_outputs``.
        candidate_sampling: ``uniform`` or ``importance`` points for the candidate mask loss.
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

    def class_loss(self, logits: torch.Tensor, matching: Matching, targets: list[dict]) -> torch.Tensor:
        """Cross-entropy of the classified queries against matched labels or no-object.

        Args:
            logits: ``[B, Q, C+1]``.
        """
        no_object = logits.shape[-1] - 1
        target = torch.full(logits.shape[:2], no_object, dtype=torch.int64, device=logits.device)
        for b, (rows, cols) in enumerate(matching.seen):
            target[b, rows.to(logits.device)] = targets[b]["labels"][cols].to(logits.device)
        queries = matching.class_queries.to(logits.device)
        weight = torch.ones(no_object + 1, device=logits.device)
        weight[no_object] = self.no_object_weight
        target = target[:, queries]
        per_query = F.cross_entropy(logits[:, queries].float().transpose(1, 2), target, weight, reduction="none")
        # A weighted mean whose denominator is summed over processes, so that the loss under
        # DDP equals the single-process loss of the global batch.
        weight_sum = all_reduce_sum(weight[target].sum()) / world_size()
        return per_query.sum() / weight_sum.clamp(min=1e-6)

    def mask_loss(
        self, pred_masks: torch.Tensor, target_masks: list[torch.Tensor], pairs: list[Pairs], importance: bool = True
    ):
        """BCE and dice sums for matched pairs; ``pred_masks [B, Q, h, w]``, targets ``[M_b, H, W]``.

        ``importance``: points concentrated where the prediction is uncertain (PointRend), else uniform.
        """
        batch_index = torch.cat([torch.full_like(rows, b) for b, (rows, _) in enumerate(pairs)])
        query_index = torch.cat([rows for rows, _ in pairs])
        if query_index.numel() == 0:
            zero = pred_masks.sum() * 0.0
            return zero, zero
        device = pred_masks.device
        src = pred_masks[batch_index.to(device), query_index.to(device)].unsqueeze(1).float()  # [N, 1, h, w]
        tgt = torch.cat([target_masks[b][cols.to(target_masks[b].device)] for b, (_, cols) in enumerate(pairs)])
        with torch.no_grad():
            if importance:
                coords = uncertain_point_coords(
                    src, self.num_points, self.oversample_ratio, self.importance_sample_ratio
                )
            else:
                coords = torch.rand(src.shape[0], self.num_points, 2, device=device)  # [N, P, 2]
            point_targets = sample_target_masks(tgt.to(device), coords)  # [N, P], masks stay binary
        point_logits = point_sample(src, coords).squeeze(1)  # [N, P]
        return sigmoid_bce_loss(point_logits, point_targets), dice_loss(point_logits, point_targets)

    def layer_losses(self, outputs: dict, targets: list[dict], padded: dict) -> dict[str, torch.Tensor]:
        """Unweighted, normalised loss terms of one read-out (``padded``: ``pad_targets(targets)``)."""
        matching = self.matcher(outputs, targets, padded=padded)
        losses = {"class": self.class_loss(outputs["pred_logits"], matching, targets)}
        bce, dice = self.mask_loss(outputs["pred_masks"], [t["masks"] for t in targets], matching.seen)
        losses["bce"], losses["dice"] = bce / self._num_masks, dice / self._num_masks
        if matching.candidate is not None:
            matched = sum(rows.numel() for rows, _ in matching.candidate)
            num_matched = self._normaliser(matched, outputs)
            pseudo = [t["pseudo_masks"] for t in targets]
            importance = self.candidate_sampling == "importance"
            cand_bce, cand_dice = self.mask_loss(outputs["pred_masks"], pseudo, matching.candidate, importance)
            losses["cand_bce"], losses["cand_dice"] = cand_bce / num_matched, cand_dice / num_matched
            losses["cand_align"] = self._alignment(outputs, targets, matching.candidate) / num_matched
        return losses

    def _alignment(self, outputs: dict, targets: list[dict], pairs: list[Pairs]) -> torch.Tensor:
        embeds = outputs["pred_embeds"]
        chosen = [embeds[b, rows.to(embeds.device)] for b, (rows, _) in enumerate(pairs)]
        goals = [targets[b]["pseudo_embeddings"][cols] for b, (_, cols) in enumerate(pairs)]
        if sum(c.shape[0] for c in chosen) == 0:
            return embeds.sum() * 0.0
        return alignment_loss(torch.cat(chosen).float(), torch.cat(goals).to(embeds.device).float())

    @staticmethod
    def _normaliser(count: int, outputs: dict) -> torch.Tensor:
        device = outputs["pred_logits"].device
        total = all_reduce_sum(torch.tensor(float(count), device=device))
        # Clamp the global count, then share it out: each rank's loss is then its part of the
        # single-process loss of the global batch (clamping after the division would not be).
        return torch.clamp(total, min=1.0) / world_size()

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        """Computes every loss term.

        Args:
            outputs: the model's output dict (with ``aux_outputs``).
            targets: per image ``labels``, ``masks`` and, for Split Matching, ``pseudo_masks``
                and ``pseudo_embeddings``.

        Returns:
            ``loss`` (the weighted total to back-propagate) and every unweighted term of the last
            read-out (``class``, ``bce``, ``dice``, ``cand_bce``, ``cand_dice``, ``cand_align``).
        """
        self._num_masks = self._normaliser(sum(len(t["labels"]) for t in targets), outputs)
        points = self.matcher.random_points(len(targets), outputs["pred_logits"].device)
        padded = pad_targets(targets, points)  # once per step, shared by every read-out's matching
        readouts = [outputs] + (list(outputs.get("aux_outputs", [])) if self.deep_supervision else [])
        total = outputs["pred_logits"].new_zeros(())
        last_terms: dict[str, torch.Tensor] = {}
        for index, readout in enumerate(readouts):
            terms = self.layer_losses(readout, targets, padded)
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
        return seen + w["candidate"] * candidate
