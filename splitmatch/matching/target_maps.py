"""Target masks kept as the maps they come from, and read at points without unpacking them.

An image's seen ground-truth masks are ``label_map == id`` for each class id present, and its
pseudo masks are ``any_s(pseudo_index[s] == k)`` for each candidate id k. Matching costs and
mask losses only ever read target masks at sampled points, so the maps are read there
directly: a point's bilinear value is the weighted sum of its four neighbour pixels'
``map == id``, with the neighbours and weights of ``grid_sample(align_corners=False)`` and
zero padding outside: bitwise what :func:`splitmatch.matching.point_sampling.gather_bilinear`
reads from the unpacked bool masks, and within float rounding of ``grid_sample`` (1e-5).
Reading costs ``4 x ids x layers x points``; unpacking costs ``ids x H x W`` bools per image.
Maps small enough for unpacking to be the cheaper read (the crossover of
:func:`~splitmatch.matching.point_sampling.sample_target_masks`) are unpacked once per criterion
call, where they are (on the device), and read as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from splitmatch.matching.point_sampling import bilinear_neighbours, sample_target_masks


def read_maps(maps: torch.Tensor, ids: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Every id's mask of every image read at that image's points, by gathering four neighbours.

    Args:
        maps: ``[B, S, H, W]`` integer maps (a label map is one layer).
        ids: ``[B, K]`` ids, the dtype of ``maps``; mask k of image b is ``any_s(maps[b, s] == ids[b, k])``.
        coords: ``[B, P, 2]`` points in ``[0, 1]``, shared by an image's masks.

    Returns:
        ``[B, K, P]`` float32.
    """
    batch, layers, height, width = maps.shape
    flat = maps.reshape(batch, layers, height * width)
    wanted = ids.view(batch, -1, 1)
    values = coords.new_zeros(batch, ids.shape[1], coords.shape[1], dtype=torch.float32)
    for position, weight in bilinear_neighbours(coords.float(), height, width):
        pixels = torch.gather(flat, 2, position.unsqueeze(1).expand(-1, layers, -1))  # [B, S, P]
        inside = pixels[:, :1] == wanted  # [B, K, P]
        for layer in range(1, layers):
            inside |= pixels[:, layer : layer + 1] == wanted
        values += inside * weight.unsqueeze(1)
    return values


def read_map_pairs(maps: torch.Tensor, ids: torch.Tensor, images: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Chosen masks read at points of their own (the mask losses' importance-sampled points).

    Args:
        maps: ``[B, S, H, W]`` integer maps.
        ids: ``[N]`` the id of each chosen mask, the dtype of ``maps``.
        images: ``[N]`` int64, the image of each chosen mask.
        coords: ``[N, P, 2]`` points in ``[0, 1]``.

    Returns:
        ``[N, P]`` float32.
    """
    batch, layers, height, width = maps.shape
    flat = maps.reshape(-1)
    neighbours = bilinear_neighbours(coords.float(), height, width)
    positions = torch.stack([position for position, _ in neighbours], dim=1)  # [N, 4, P]
    plane = images.view(-1, 1, 1) * (layers * height * width)  # start of each chosen mask's image
    wanted = ids.view(-1, 1, 1)
    inside = torch.take(flat, plane + positions) == wanted  # [N, 4, P]
    for layer in range(1, layers):
        inside |= torch.take(flat, plane + (layer * height * width) + positions) == wanted
    values = coords.new_zeros(coords.shape[:2], dtype=torch.float32)
    for corner, (_, weight) in enumerate(neighbours):
        values += inside[:, corner] * weight
    return values


def unpacking_is_cheaper(height: int, width: int, num_points: int) -> bool:
    """Small masks are unpacked and read by ``grid_sample``; large ones are gathered from the maps
    (crossover measured on a 2-core CPU: gathering wins from 512 x 512 at 12,544 points)."""
    return height * width <= 16 * num_points


# Per kind of target: the keys of its map, of its mask ids, and of its masks given unpacked.
TARGET_KEYS = {"seen": ("label_map", "label_ids", "masks"), "pseudo": ("pseudo_index", "pseudo_ids", "pseudo_masks")}


@dataclass
class TargetMaps:
    """A batch's target masks of one kind (seen or pseudo), read at points.

    Mask k of image b is ``any_s(maps[b, s] == ids[b, k])``. Small masks are unpacked once
    (``dense``): reading them all through ``grid_sample`` is then cheaper than gathering. Targets
    may also come with their masks unpacked (``masks [M, H, W]``, ``pseudo_masks [K, H, W]``, as
    tests and tools write them by hand); ``maps`` and ``ids`` are then ``None``. Either way the
    numbers are those of :func:`~splitmatch.matching.point_sampling.sample_target_masks` on the
    unpacked masks.

    Attributes:
        maps: ``[B, S, H, W]`` or ``None``; ids: ``[B, K]`` (the dtype of ``maps``) or ``None``.
        dense: ``[B, K, H, W]`` bool or ``None`` (large maps).
        counts: ``K_b``, the real rows of image b (the rest is padding).
    """

    maps: torch.Tensor | None
    ids: torch.Tensor | None
    dense: torch.Tensor | None
    counts: list[int]

    @classmethod
    def of(cls, targets: list[dict], kind: str, num_points: int) -> TargetMaps:
        """The ``kind`` (``seen`` or ``pseudo``) masks of per-image ``targets``, to be read at ``num_points`` points."""
        map_key, ids_key, dense_key = TARGET_KEYS[kind]
        maps = stacked_maps(targets, kind)
        if maps is not None and all(ids_key in t for t in targets):
            ids, counts = pad_stack([t[ids_key] for t in targets])
            small = unpacking_is_cheaper(maps.shape[-2], maps.shape[-1], num_points)
            dense = (maps.unsqueeze(1) == ids.view(*ids.shape, 1, 1, 1)).any(2) if small else None
            return cls(maps, ids, dense, counts)
        if all(dense_key in t for t in targets):
            dense, counts = pad_stack([t[dense_key] for t in targets])
            return cls(None, None, dense, counts)
        raise ValueError(f"every target needs {map_key!r} and {ids_key!r} (or {dense_key!r}) for its {kind} masks")

    def read(self, coords: torch.Tensor) -> torch.Tensor:
        """Every mask at its image's points: ``coords [B, P, 2]`` -> ``[B, K, P]`` float32."""
        if self.dense is None:
            return read_maps(self.maps, self.ids, coords)
        rows = [sample_target_masks(self.dense[b, :count], coords[b : b + 1]) for b, count in enumerate(self.counts)]
        return pad_stack(rows)[0]

    def read_pairs(self, images: torch.Tensor, targets: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Mask ``targets[n]`` of image ``images[n]`` at its own points ``coords [N, P, 2]`` -> ``[N, P]``."""
        if self.dense is None:
            return read_map_pairs(self.maps, self.ids[images, targets], images, coords)
        return sample_target_masks(self.dense[images, targets], coords)


def stacked_maps(targets: list[dict], kind: str) -> torch.Tensor | None:
    """The targets' ``[B, S, H, W]`` maps of one kind, expanded from the compact pseudo-index form
    where the targets carry that; ``None`` when they carry no maps."""
    if kind == "pseudo" and all("pseudo_grid" in t for t in targets):
        compact = [stack_maps([t[key] for t in targets], key) for key in ("pseudo_grid", "pseudo_rows", "pseudo_cols")]
        return expand_index_map(*compact, stack_maps([t["label_map"] for t in targets], "label_map"))
    map_key = TARGET_KEYS[kind][0]
    return stack_maps([t[map_key] for t in targets], map_key) if all(map_key in t for t in targets) else None


def pad_stack(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Stacks ``[M_i, ...]`` tensors into ``[B, max M_i, ...]`` with zero padding; returns the M_i too."""
    counts = [t.shape[0] for t in tensors]
    out = tensors[0].new_zeros((len(tensors), max(counts), *tensors[0].shape[1:]))
    for i, t in enumerate(tensors):
        out[i, : counts[i]] = t
    return out, counts


def stack_maps(maps: list[torch.Tensor], key: str) -> torch.Tensor:
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) > 1:
        raise ValueError(f"the targets of one batch must share one {key} size, got {sorted(shapes)}")
    return torch.stack(maps)


def expand_index_map(
    grid: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, label_maps: torch.Tensor
) -> torch.Tensor:
    """Pseudo-index maps from the compact form they travel in, on the device they are on.

    Args:
        grid: ``[B, S, h, w]`` uint8, the cached maps.
        rows, cols: ``[B, H]``, ``[B, W]`` int64, the grid row and column each pixel shows, -1 for padding.
        label_maps: ``[B, 1, H, W]`` uint8 / uint16: pseudo masks only cover ignored pixels (the
            dtype's maximum), as the dataset's own ``pseudo_index``.

    Returns:
        ``[B, S, H, W]`` uint8, equal to the dataset's ``pseudo_index``.
    """
    batch, layers, height, width = grid.shape
    cells = rows.clamp(min=0).unsqueeze(2) * width + cols.clamp(min=0).unsqueeze(1)  # [B, H', W']
    index = torch.gather(grid.reshape(batch, layers, -1), 2, cells.flatten(1).unsqueeze(1).expand(-1, layers, -1))
    ignore = torch.iinfo(label_maps.dtype).max
    keep = (label_maps[:, 0] == ignore) & (rows >= 0).unsqueeze(2) & (cols >= 0).unsqueeze(1)  # [B, H', W']
    return index.view(batch, layers, *keep.shape[1:]) * keep.unsqueeze(1)


def dense_masks(maps: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The masks themselves, for inspection and tests (training never needs them).

    Args:
        maps: ``[S, H, W]``; ids: ``[K]``.

    Returns:
        ``[K, H, W]`` bool.
    """
    return (maps.unsqueeze(0) == ids.to(maps.dtype).view(-1, 1, 1, 1)).any(1)


def index_map_areas(index: torch.Tensor, count: int) -> torch.Tensor:
    """Pixels of each mask of a pseudo-index map, as ``dense_masks(index, 1..count).sum((1, 2))``.

    A pixel counts once for an id however many layers hold it there (masks are unions of their
    layers), without unpacking the masks: each layer's histogram skips the pixels where an
    earlier layer holds the same id.

    Args:
        index: ``[S, H, W]`` uint8, 0 no mask, k mask k.

    Returns:
        ``[count]`` int64, the area of masks 1..count.
    """
    bins = torch.iinfo(index.dtype).max + 1
    areas = torch.zeros(bins, dtype=torch.int64, device=index.device)
    for s in range(index.shape[0]):
        layer = index[s]
        fresh = layer != 0
        for earlier in range(s):
            fresh &= layer != index[earlier]
        areas += torch.bincount(torch.where(fresh, layer, 0).flatten(), minlength=bins)
    return areas[1 : count + 1]
