"""Mask2Former-style query decoder with seen and candidate query groups."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SEEN_GROUP, CANDIDATE_GROUP = 0, 1


def sine_position_embedding(batch: int, channels: int, height: int, width: int, device) -> torch.Tensor:
    """DETR's normalised 2D sine embedding: ``[B, channels, h, w]`` (half for y, half for x)."""
    half = channels // 2
    y = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 * math.pi
    x = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(half, device=device) // 2) / half)
    pos_y = y[:, None] / dim_t  # [h, half]
    pos_x = x[:, None] / dim_t  # [w, half]
    pos_y = torch.stack([pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()], dim=2).flatten(1)
    pos_x = torch.stack([pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()], dim=2).flatten(1)
    pos = torch.cat([pos_y[:, None, :].expand(-1, width, -1), pos_x[None, :, :].expand(height, -1, -1)], dim=2)
    pos = F.pad(pos, (0, channels - 2 * half))
    return pos.permute(2, 0, 1).unsqueeze(0).expand(batch, -1, -1, -1)


class MLP(nn.Sequential):
    """``num_layers`` linear layers with ReLU between them."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DecoderLayer(nn.Module):
    """Cross-attention to pixel features, then self-attention among queries, then FFN (post-norm)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, queries, query_pos, memory, memory_pos, attn_mask):
        """queries/query_pos ``[B, Q, d]``, memory/memory_pos ``[B, HW, d]``,
        attn_mask ``[B*heads, Q, HW]`` bool (True blocks) or None -> ``[B, Q, d]``.

        The attention weights are never asked for: without them nn.MultiheadAttention runs
        scaled_dot_product_attention (fused kernels on CUDA) instead of materialising them."""
        key = memory + memory_pos
        attended = self.cross_attn(queries + query_pos, key, memory, attn_mask=attn_mask, need_weights=False)[0]
        queries = self.norms[0](queries + attended)
        q = queries + query_pos
        queries = self.norms[1](queries + self.self_attn(q, q, queries, need_weights=False)[0])
        return self.norms[2](queries + self.ffn(queries))


class QueryDecoder(nn.Module):
    """Transformer decoder over ``N_s`` seen and ``N_c`` candidate queries.

    After the learned queries are read out once and after every layer, each query ``i`` gives
    a mask ``m_i = <mask_embed(q_i), F'>``, an embedding ``z_i`` in CLIP's joint space
    (normalised) and class logits ``cos(z_i, t_c) / tau`` over the given class embeddings plus
    a no-object logit ``cos(z_i, n) / tau`` against a learned no-object embedding ``n``.

    Args:
        hidden_dim: d.
        embed_dim: D, CLIP's joint space.
        num_layers: L.
        num_heads, ffn_dim: attention heads and FFN width.
        num_seen_queries: N_s.
        num_candidate_queries: N_c (may be 0).
        masked_attention: restrict cross-attention to each query's current mask (Mask2Former).
        temperature: tau.
        group_embed_heads: a separate embedding projection for the candidate group.
    """

    def __init__(
        self,
        hidden_dim: int,
        embed_dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        num_seen_queries: int,
        num_candidate_queries: int,
        masked_attention: bool = True,
        temperature: float = 0.07,
        group_embed_heads: bool = False,
    ) -> None:
        super().__init__()
        num_queries = num_seen_queries + num_candidate_queries
        self.num_heads = num_heads
        self.masked_attention = masked_attention
        self.temperature = temperature
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_pos = nn.Embedding(num_queries, hidden_dim)
        self.layers = nn.ModuleList(DecoderLayer(hidden_dim, num_heads, ffn_dim) for _ in range(num_layers))
        self.output_norm = nn.LayerNorm(hidden_dim)
        self.mask_embed = MLP(hidden_dim, hidden_dim, hidden_dim, 3)
        self.embed_head = nn.Linear(hidden_dim, embed_dim)
        # Optionally the candidate group projects into CLIP's space with its own head, so that
        # aligning candidates to region embeddings does not move the seen queries' embeddings.
        self.candidate_embed_head = (
            nn.Linear(hidden_dim, embed_dim) if group_embed_heads and num_candidate_queries > 0 else None
        )
        self.no_object_embedding = nn.Parameter(F.normalize(torch.randn(embed_dim), dim=0))
        group = torch.tensor([SEEN_GROUP] * num_seen_queries + [CANDIDATE_GROUP] * num_candidate_queries)
        self.register_buffer("query_group", group, persistent=False)

    def predict(self, queries: torch.Tensor, mask_features: torch.Tensor, class_embeddings: torch.Tensor) -> dict:
        """Read-out heads: ``queries [B, Q, d]``, ``mask_features [B, d, H, W]``, ``class_embeddings [C, D]``."""
        q = self.output_norm(queries)
        embeds = self.embed_head(q)  # [B, Q, D]
        if self.candidate_embed_head is not None:
            is_candidate = (self.query_group == CANDIDATE_GROUP).view(1, -1, 1)
            embeds = torch.where(is_candidate, self.candidate_embed_head(q), embeds)
        embeds = F.normalize(embeds, dim=-1)
        targets = torch.cat([class_embeddings.to(embeds.dtype), F.normalize(self.no_object_embedding, dim=0)[None]])
        logits = embeds @ targets.t() / self.temperature  # [B, Q, C+1]
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(q), mask_features)  # [B, Q, H, W]
        return {"pred_logits": logits, "pred_masks": masks, "pred_embeds": embeds, "query_group": self.query_group}

    def _attention_mask(self, masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``[B, Q, H, W]`` mask logits -> ``[B*heads, Q, h*w]`` bool, True where attention is blocked."""
        small = F.interpolate(masks.detach(), size=size, mode="bilinear", align_corners=False)
        blocked = small.flatten(2).sigmoid() < 0.5
        blocked[blocked.all(dim=-1)] = False  # a query whose mask is empty attends everywhere
        return blocked.repeat_interleave(self.num_heads, dim=0)

    def forward(self, memory: torch.Tensor, mask_features: torch.Tensor, class_embeddings: torch.Tensor) -> dict:
        """Decodes queries.

        Args:
            memory: ``[B, d, h, w]`` enhanced pixel features F'.
            mask_features: ``[B, d, H, W]`` features masks are read from.
            class_embeddings: ``[C, D]`` normalised text embeddings.

        Returns:
            the last layer's ``pred_logits [B, Q, C+1]``, ``pred_masks [B, Q, H, W]``,
            ``pred_embeds [B, Q, D]``, ``query_group [Q]`` and ``aux_outputs`` (same keys, earlier
            read-outs, first to last).
        """
        batch, _, height, width = memory.shape
        memory_pos = sine_position_embedding(batch, memory.shape[1], height, width, memory.device)
        memory_seq = memory.flatten(2).transpose(1, 2)  # [B, h*w, d]
        memory_pos = memory_pos.flatten(2).transpose(1, 2).to(memory.dtype)
        queries = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)
        query_pos = self.query_pos.weight.unsqueeze(0).expand(batch, -1, -1)
        predictions = [self.predict(queries, mask_features, class_embeddings)]
        for layer in self.layers:
            attn_mask = None
            if self.masked_attention:
                attn_mask = self._attention_mask(predictions[-1]["pred_masks"], (height, width))
            queries = layer(queries, query_pos, memory_seq, memory_pos, attn_mask)
            predictions.append(self.predict(queries, mask_features, class_embeddings))
        out = predictions[-1]
        out["aux_outputs"] = predictions[:-1]
        return out
