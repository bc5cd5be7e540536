"""Each training-free recipe's dense features against the authors' math, re-expressed here.

The references below are written from the authors' code (docs/training-free.md names the files
and lines) in the layout that code uses (tokens first, heads folded into the batch, ``bmm``),
independently of the library's implementation, and compared on CLIP ViT-B/16 at real shapes
with random weights.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.clip.loading import build_clip

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
TOLERANCE = 1e-4  # relative, over the whole feature map


@pytest.fixture(scope="module")
def vitb16():
    torch.manual_seed(0)
    clip = build_clip("ViT-B-16-quickgelu")  # random weights at real shapes
    # Random init leaves CLIP's norms at 1 and 0 and the biases at 0; real weights do not.
    with torch.no_grad():
        for name, parameter in clip.visual.named_parameters():
            if "ln" in name or name.endswith("bias"):
                parameter.add_(0.1 * torch.randn_like(parameter))
    return clip.visual


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm())


def image(height: int, width: int) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height + width)) * 255


def peer_positional(visual, rows: int, cols: int) -> torch.Tensor:
    """SCLIP / NACLIP / ClearCLIP / SC-CLIP ``interpolate_pos_encoding``: ``[1, 1 + N, W]``."""
    pos = visual.positional_embedding
    side = int(math.sqrt(pos.shape[0] - 1))
    grid = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid,
        scale_factor=((rows + 0.1) / side, (cols + 0.1) / side),
        mode="bicubic",
        align_corners=False,
        recompute_scale_factor=False,
    )
    return torch.cat([pos[:1][None], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)], dim=1)


def peer_tokens_before_last(visual, images: torch.Tensor, keep_outputs: bool = False):
    """The OpenAI-CLIP forward of the peers up to the last block, tokens first: ``[T, B, W]``."""
    x = visual.conv1((images / 255 - MEAN) / STD)
    rows, cols = x.shape[-2:]
    x = x.flatten(2).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + peer_positional(visual, rows, cols)
    x = visual.ln_pre(x).permute(1, 0, 2)
    outputs = []
    for block in visual.transformer.resblocks[:-1]:
        x = block(x.permute(1, 0, 2)).permute(1, 0, 2)  # open_clip's blocks take [B, T, W]
        outputs.append(x)
    return (x, outputs, (rows, cols)) if keep_outputs else (x, (rows, cols))


def peer_qkv(attn, x: torch.Tensor):
    """``x [T, B, W]`` -> q, k, v ``[B*h, T, d]``, as the peers' ``custom_attn`` folds heads."""
    tokens, batch, width = x.shape
    heads = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return [t.contiguous().view(tokens, batch * heads, width // heads).transpose(0, 1) for t in (q, k, v)]


def peer_out(attn, weights: torch.Tensor, v: torch.Tensor, batch: int) -> torch.Tensor:
    out = torch.bmm(weights, v).transpose(0, 1)
    return attn.out_proj(out.contiguous().view(out.shape[0], batch, -1))


def peer_last_block(visual, images: torch.Tensor):
    """Where SCLIP, ClearCLIP and NACLIP start their own last block: the block, its input tokens
    ``x [T, B, W]``, the q, k, v ``[B*h, T, d]`` of ``ln_1(x)``, and the patch grid."""
    x, grid = peer_tokens_before_last(visual, images)
    block = visual.transformer.resblocks[-1]
    return block, x, peer_qkv(block.attn, block.ln_1(x)), grid


def peer_map(visual, tokens: torch.Tensor, grid) -> torch.Tensor:
    """Patch tokens ``[N, B, W]`` through ``ln_post`` and ``proj`` -> ``[B, D, h, w]``."""
    projected = visual.ln_post(tokens.permute(1, 0, 2)) @ visual.proj
    return projected.transpose(1, 2).reshape(projected.shape[0], -1, *grid)


def ours(visual, images: torch.Tensor, recipe: str, pos_interpolation: str = "bicubic_scale") -> torch.Tensor:
    encoder = ClipImageEncoder(visual, region_layers=1, pos_interpolation=pos_interpolation)
    with torch.no_grad():
        return encoder(images, use_prompts=False, dense_recipe=recipe)["dense_recipe"]


@torch.no_grad()
def test_clearclip_is_query_query_attention_without_residual_or_feed_forward(vitb16):
    images = image(208, 240)
    block, _, (q, _, v), grid = peer_last_block(vitb16, images)
    scale = q.shape[-1] ** -0.5
    out = peer_out(block.attn, F.softmax(torch.bmm(q, q.transpose(1, 2)) * scale, dim=-1), v, 1)
    assert relative_error(ours(vitb16, images, "clearclip"), peer_map(vitb16, out[1:], grid)) < TOLERANCE


@torch.no_grad()
def test_sclip_adds_query_query_and_key_key_attention_and_keeps_residual_and_feed_forward(vitb16):
    images = image(208, 240)
    block, x, (q, k, v), grid = peer_last_block(vitb16, images)
    scale = q.shape[-1] ** -0.5
    weights = F.softmax(torch.bmm(q, q.transpose(1, 2)) * scale, -1) + F.softmax(
        torch.bmm(k, k.transpose(1, 2)) * scale, -1
    )
    x = x + peer_out(block.attn, weights, v, 1)
    x = x + block.mlp(block.ln_2(x))
    assert relative_error(ours(vitb16, images, "sclip"), peer_map(vitb16, x[1:], grid)) < TOLERANCE


def naclip_window(rows: int, cols: int, std: float) -> torch.Tensor:
    """NACLIP's ``gaussian_window`` and ``get_attention_addition``, by convolving one-hot maps."""
    axes = [torch.linspace(-(n - 1) / 2, (n - 1) / 2, n) / (std * math.sqrt(2)) for n in (2 * rows - 1, 2 * cols - 1)]
    window = torch.exp(-(torch.stack(torch.meshgrid(*axes, indexing="ij")) ** 2).sum(0))
    ones = torch.eye(rows * cols).view(rows * cols, 1, rows, cols)
    spread = F.conv2d(ones, window[None, None], padding="same").view(rows * cols, rows * cols)
    return F.pad(spread, (1, 0, 1, 0))  # the CLS row and column get nothing


@torch.no_grad()
def test_naclip_is_key_key_attention_with_a_gaussian_neighbourhood(vitb16):
    images = image(208, 240)
    block, _, (_, k, v), grid = peer_last_block(vitb16, images)
    logits = torch.bmm(k, k.transpose(1, 2)) * k.shape[-1] ** -0.5 + naclip_window(*grid, 5.0)[None]
    out = peer_out(block.attn, F.softmax(logits, dim=-1), v, 1)
    assert relative_error(ours(vitb16, images, "naclip"), peer_map(vitb16, out[1:], grid)) < TOLERANCE


@torch.no_grad()
def test_maskclip_runs_mmsegs_vit_and_keeps_residual_and_feed_forward_in_the_last_block(vitb16):
    """mmseg's ViT (LayerNorm eps 1e-6, exact GELU) with CLIP's weights; the value path of the last
    block through the output projection, plus the block input, plus the feed-forward."""
    images = image(208, 240)
    norm = lambda layer, t: F.layer_norm(t, layer.normalized_shape, layer.weight, layer.bias, 1e-6)  # noqa: E731
    ffn = lambda mlp, t: mlp.c_proj(torch.nn.GELU()(mlp.c_fc(t)))  # noqa: E731
    x = vitb16.conv1((images / 255 - MEAN) / STD)
    grid = tuple(x.shape[-2:])
    pos = vitb16.positional_embedding
    patch_pos = (
        F.interpolate(
            pos[1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False
        )
        .flatten(2)
        .transpose(1, 2)
    )  # mmseg resize_pos_embed
    x = torch.cat([vitb16.class_embedding.view(1, 1, -1), x.flatten(2).transpose(1, 2)], dim=1)
    x = norm(vitb16.ln_pre, x + torch.cat([pos[:1][None], patch_pos], dim=1))
    for block in vitb16.transformer.resblocks[:-1]:
        y = norm(block.ln_1, x)
        x = x + block.attn(y, y, y, need_weights=False)[0]
        x = x + ffn(block.mlp, norm(block.ln_2, x))
    block = vitb16.transformer.resblocks[-1]
    y = F.linear(norm(block.ln_1, x), block.attn.in_proj_weight, block.attn.in_proj_bias)
    v = F.linear(y.chunk(3, dim=-1)[2], block.attn.out_proj.weight, block.attn.out_proj.bias) + x
    v = v + ffn(block.mlp, norm(block.ln_2, v))
    expected = (norm(vitb16.ln_post, v[:, 1:]) @ vitb16.proj).transpose(1, 2).reshape(1, -1, *grid)
    assert relative_error(ours(vitb16, images, "maskclip", "bicubic"), expected) < TOLERANCE


def peer_outliers(x: torch.Tensor, n_neighbors: int = 30, contamination: float = 0.05) -> torch.Tensor:
    """SC-CLIP's ``lof_pytorch``: indices of the outlying rows of ``x [N, W]``."""
    distances = torch.norm(x[:, None] - x[None, :], dim=2, p=2) ** 2
    knn_distances, knn_indices = torch.topk(distances, k=n_neighbors + 1, largest=False)
    knn_distances, knn_indices = knn_distances[:, 1:], knn_indices[:, 1:]
    reach = torch.max(knn_distances, knn_distances[:, -1].unsqueeze(1).expand_as(knn_distances))
    lrd = n_neighbors / torch.nan_to_num(reach.mean(dim=1), nan=1e-6)
    lof = (lrd[knn_indices] / lrd.unsqueeze(1)).mean(dim=1)
    return torch.where(lof > torch.quantile(lof.float(), 1 - contamination))[0]


def peer_mean_interpolation(feature_map: torch.Tensor, places: list) -> torch.Tensor:
    """SC-CLIP's ``mean_interpolation`` on ``[1, C, H, W]`` at ``places`` ``[(row, col), ...]``."""
    _, channels, height, width = feature_map.shape
    kernel = torch.ones(channels, 1, 3, 3)
    kernel[:, 0, 1, 1] = 0
    mask = torch.ones(height, width)
    rows, cols = torch.tensor([p[0] for p in places]), torch.tensor([p[1] for p in places])
    mask[rows, cols] = 0
    mask = mask[None, None]
    sums = F.conv2d(F.pad(feature_map * mask, (1, 1, 1, 1)), kernel, groups=channels)
    valid = F.conv2d(F.pad(mask, (1, 1, 1, 1)), kernel[:1])
    safe = valid.clone()
    safe[safe == 0] = 1
    marked = torch.zeros(height, width)
    marked[rows, cols] = 1
    update = marked[None, None] * (valid > 0).float()
    return feature_map * (1 - update) + sums / safe * update


def peer_scclip_attention(block, x: torch.Tensor, mid_simi: torch.Tensor) -> torch.Tensor:
    q, k, v = peer_qkv(block.attn, x)
    mid = (mid_simi - torch.mean(mid_simi)) * 3.0
    mid[mid < 0.0] = float("-inf")
    weights = F.softmax(mid.repeat(block.attn.num_heads, 1, 1), dim=-1)
    weights = (weights + F.softmax(torch.bmm(k, k.transpose(1, 2)) * k.shape[-1] ** -0.5, dim=-1)) / 2
    return peer_out(block.attn, weights, v, 1)


def peer_aggregate(x: torch.Tensor, corrs: torch.Tensor) -> torch.Tensor:
    normalized = corrs / (corrs.sum(dim=-1, keepdim=True) + 1e-6)
    return torch.matmul(normalized, x.permute(1, 0, 2)).permute(1, 0, 2)


def peer_similarity(tokens: torch.Tensor) -> torch.Tensor:
    tokens = tokens / tokens.norm(dim=2, keepdim=True)
    return torch.matmul(tokens.permute(1, 0, 2), tokens.permute(1, 2, 0))


@torch.no_grad()
def test_scclip_calibrates_anomalies_attention_and_fuses_levels_as_its_authors_code(vitb16):
    """SC-CLIP's VisionTransformer.forward with its defaults (pre 8, post 3, fused 3..9, res_cls 0.3,
    beta 0.4), on a square grid as its code requires."""
    images = image(240, 240)
    x, outputs, grid = peer_tokens_before_last(vitb16, images, keep_outputs=True)
    side = grid[0]
    cls_token = x[:1]
    outliers = peer_outliers(x[1:].squeeze(1))
    places = [(int(i) // side, int(i) % side) for i in outliers]
    to_map = lambda t: t.permute(1, 2, 0).reshape(1, -1, side, side)  # noqa: E731
    from_map = lambda m: m.reshape(1, m.shape[1], side * side).permute(2, 0, 1)  # noqa: E731
    x = from_map(peer_mean_interpolation(to_map(x[1:]), places))
    feats = from_map(peer_mean_interpolation(to_map(outputs[8][1:].clone()), places))
    before = peer_similarity(feats)
    mid = before.clone()
    before[before < 0.4] = 0.0
    x = peer_aggregate(x, before)
    block = vitb16.transformer.resblocks[-1]
    x = peer_scclip_attention(block, block.ln_1(x), mid) + 0.3 * cls_token
    after = peer_similarity(outputs[3][1:].clone())
    after[after < 0.4] = 0.0
    x = peer_aggregate(x, after)
    fused = sum(outputs[i] for i in range(3, 10))
    extra = peer_scclip_attention(block, block.ln_1(fused[1:]), mid) + 0.3 * fused[:1]
    x = x + peer_aggregate(extra, after)
    assert len(outliers) > 0
    assert relative_error(ours(vitb16, images, "scclip"), peer_map(vitb16, x, grid)) < TOLERANCE


@torch.no_grad()
def test_the_recipes_read_different_features(vitb16):
    """What the recipes change is not a rounding: on the same weights their maps differ."""
    images = image(208, 240)
    maps = {recipe: F.normalize(ours(vitb16, images, recipe), dim=1) for recipe in ("value-path", "maskclip", "sclip")}
    assert relative_error(maps["maskclip"], maps["value-path"]) > 0.1
    assert relative_error(maps["sclip"], maps["value-path"]) > 0.1


def test_peer_positional_resize_is_the_encoders_bicubic_scale(vitb16):
    encoder = ClipImageEncoder(vitb16, region_layers=1, pos_interpolation="bicubic_scale")
    torch.testing.assert_close(encoder.positional_embedding((13, 15))[None], peer_positional(vitb16, 13, 15))
    assert torch.equal(encoder.positional_embedding((7, 28)), vitb16.positional_embedding)  # same token count


@torch.no_grad()
def test_the_features_alone_are_those_of_the_full_forward():
    torch.manual_seed(1)
    encoder = ClipImageEncoder(build_clip("world-clip").visual, region_layers=1, pos_interpolation="bicubic_scale")
    images = image(80, 104)
    for recipe in ("value-path", "maskclip", "clearclip", "sclip", "naclip", "scclip"):
        full = encoder(images, use_prompts=False, dense_recipe=recipe)["dense_recipe"]
        torch.testing.assert_close(encoder.recipe_features(images, recipe), full)
    with pytest.raises(ValueError, match="unknown dense-feature recipe 'dino'"):
        encoder.recipe_features(images, "dino")
