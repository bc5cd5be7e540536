"""Region embeddings from crops: CLIP's image embedding of a square window around each pseudo mask.

The method's region embedding lets a copy of the CLS token attend inside the mask in CLIP's
last blocks (:meth:`ClipImageEncoder.region_embeddings_from_hidden`). The alternative here
(``pseudo.region_embedding: crop``) shows CLIP what it was trained on, a picture framed on one
thing: the square around the mask's bounding box, ``crop_context`` times its larger side (the
object and a little of its surroundings), resized to CLIP's own input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from splitmatch.clip.image_encoder import ClipImageEncoder


def crop_windows(masks: torch.Tensor, patch: tuple[int, int], image_size: tuple[int, int], context: float):
    """Square pixel windows around masks on the patch grid, shifted inside the image.

    Args:
        masks: ``[K, h, w]`` bool, none empty.
        patch: patch size ``(ph, pw)`` in pixels.
        image_size: ``(H, W)`` of the image the grid covers.
        context: window side / the larger side of the mask's bounding box.

    Returns:
        ``[K, 3]`` int64 ``(top, left, side)``; the side is at most ``min(H, W)``.
    """
    height, width = image_size
    rows = masks.any(dim=2)  # [K, h]
    cols = masks.any(dim=1)  # [K, w]
    index_h = torch.arange(masks.shape[1], device=masks.device)
    index_w = torch.arange(masks.shape[2], device=masks.device)
    top = torch.where(rows, index_h, masks.shape[1]).amin(1) * patch[0]
    bottom = (torch.where(rows, index_h, -1).amax(1) + 1) * patch[0]
    left = torch.where(cols, index_w, masks.shape[2]).amin(1) * patch[1]
    right = (torch.where(cols, index_w, -1).amax(1) + 1) * patch[1]
    extent = torch.maximum(bottom - top, right - left).float()
    side = (extent * context).round().clamp(max=min(height, width)).long()
    centre_y, centre_x = (top + bottom).float() / 2, (left + right).float() / 2
    window_top = (centre_y - side / 2).round().long().clamp(min=0)
    window_top = torch.minimum(window_top, height - side)
    window_left = (centre_x - side / 2).round().long().clamp(min=0)
    window_left = torch.minimum(window_left, width - side)
    return torch.stack([window_top, window_left, side], dim=1)


@torch.no_grad()
def crop_region_embeddings(
    encoder: ClipImageEncoder, images: torch.Tensor, masks: list[torch.Tensor], context: float, chunk: int = 64
) -> list[torch.Tensor]:
    """CLIP image embeddings of a square crop around each mask (no prompts).

    Args:
        images: ``[B, 3, H, W]`` 0..255.
        masks: per image ``[K_b, h, w]`` bool on the patch grid of ``images``.

    Returns:
        per image ``[K_b, D]``, not normalised.
    """
    size = tuple(encoder.visual.image_size)
    crops = []
    for image, image_masks in zip(images, masks):
        for top, left, side in crop_windows(image_masks, encoder.patch_size, image.shape[-2:], context).tolist():
            window = image[None, :, top : top + side, left : left + side].float()
            crops.append(F.interpolate(window, size=size, mode="bilinear", align_corners=False)[0])
    if not crops:
        return [images.new_zeros(0, encoder.embed_dim) for _ in masks]
    stacked = torch.stack(crops)  # [sum K_b, 3, n, n]
    embeddings = torch.cat(
        [encoder(stacked[i : i + chunk], use_prompts=False)["cls_embedding"] for i in range(0, len(stacked), chunk)]
    )
    return list(embeddings.split([m.shape[0] for m in masks]))
