"""The world's small CLIP: an open_clip architecture trained contrastively on world captions.

``splitmatch toy-clip --world DIR --out FILE`` trains it from a fixed seed on random crops of
the world's ``captions`` split (captions name every visible class, unseen ones included, as web
captions do) and writes float16 safetensors that load through the same code as real CLIP
weights (:func:`splitmatch.clip.loading.build_clip`). The file's metadata records how it was
made and its zero-shot accuracy.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save
from tqdm import tqdm

from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.clip.loading import build_clip, clip_tokenizer
from splitmatch.clip.text_encoder import ClipTextEncoder
from splitmatch.data.folder import DatasetFolder, read_image, read_label
from splitmatch.storage.files import atomic_write_bytes, parse_json, read_json
from splitmatch.world.captions import CropSampler, positives


@dataclass(frozen=True)
class ToyClipSpec:
    arch: str = "world-clip"  # a model config in splitmatch/configs/clip
    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    crop_scale: tuple[float, float] = (0.5, 1.0)  # crop side / image short side
    object_crop_prob: float = 0.5  # share of crops framed on one object
    positional_embedding: bool = False  # learn one (True) or keep it at zero
    dense_weight: float = 1.0  # weight of the pooled dense-feature contrastive term (0: plain CLIP)
    seed: int = 0


def load_split(folder: DatasetFolder, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images, labels = [], []
    for sample in folder.samples(split):
        image = read_image(sample.image_path)
        images.append(image)
        labels.append(read_label(sample.label_path, folder.classes.num_classes, image.shape[:2]))
    return images, labels


def symmetric_contrastive(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CLIP's loss with multi-positive targets: ``logits [N, N]`` image x text, ``target [N, N]``."""
    return (soft_cross_entropy(logits, target) + soft_cross_entropy(logits.t(), target.t())) / 2


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` logits against a row-stochastic ``[N, M]`` target."""
    return -(target * logits.log_softmax(-1)).sum(-1).mean()


def train_toy_clip(world: str | Path, out: str | Path, spec: ToyClipSpec = ToyClipSpec(), progress: bool = True):
    """Trains the small CLIP and writes it to ``out``; returns its record (with zero-shot accuracy)."""
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    folder = DatasetFolder(world)
    names = folder.classes.names
    images, labels = load_split(folder, "captions")
    model = build_clip(spec.arch)
    size = model.visual.image_size[0]
    encoder = ClipImageEncoder(model.visual)
    encoder.visual.requires_grad_(True)
    if not spec.positional_embedding:
        # Kept at zero: at this size a learned position embedding dominated the value-path
        # features (K-Means on them drew concentric rings, not objects). Without it the dense
        # features describe content, and textures tell this world's classes apart.
        model.visual.positional_embedding.data.zero_()
        model.visual.positional_embedding.requires_grad_(False)
    tokenizer = clip_tokenizer(spec.arch)
    sampler = CropSampler(images, labels, names, size, spec.crop_scale, object_crop_prob=spec.object_crop_prob)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=spec.lr, betas=(0.9, 0.98), weight_decay=spec.weight_decay)
    started = time.time()
    model.train()
    bar = tqdm(range(spec.steps), desc="small CLIP", disable=not progress, leave=False)
    for step in bar:
        warm = min(1.0, (step + 1) / spec.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = spec.lr * warm * 0.5 * (1 + math.cos(math.pi * step / spec.steps))
        crops, class_sets, captions = sampler.sample(spec.batch_size, rng)
        features = encoder(crops, value_features=spec.dense_weight > 0)
        text_embeddings = model.encode_text(tokenizer(captions), normalize=True)
        target = positives(class_sets)
        scale = model.logit_scale.exp().clamp(max=100)
        loss = symmetric_contrastive(
            scale * F.normalize(features["cls_embedding"], dim=-1) @ text_embeddings.t(), target
        )
        if spec.dense_weight > 0:
            # The mean of the dense (value-path) features is contrasted with the caption too, so
            # that each patch's feature speaks the text's language, as MaskCLIP finds in CLIP at scale.
            pooled = F.normalize(features["dense_values"].mean(dim=(2, 3)), dim=-1)
            loss = loss + spec.dense_weight * symmetric_contrastive(scale * pooled @ text_embeddings.t(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    record = {
        "spec": asdict(spec),
        "world": {**_world_record(Path(world)), "classes": list(names)},
        "train_seconds": round(time.time() - started, 1),
        "final_loss": round(loss.item(), 4),
        "zero_shot": zero_shot_report(model, folder, "val", spec.arch),
    }
    tensors = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out, save(tensors, metadata={"splitmatch_toy_clip": json.dumps(record)}))
    return record


def _world_record(root: Path) -> dict:
    path = root / "world.json"
    return read_json(path, "world record") if path.is_file() else {}


def read_toy_clip_record(path: str | Path) -> dict | None:
    """The record a toy-CLIP file carries, or ``None`` for other files."""
    with safe_open(str(path), framework="pt") as handle:
        text = (handle.metadata() or {}).get("splitmatch_toy_clip")
    return parse_json(text) if text else None


@torch.no_grad()
def zero_shot_report(model, folder: DatasetFolder, split: str, arch: str, max_images: int = 200) -> dict:
    """Zero-shot accuracy of the small CLIP over object classes, seen and unseen apart.

    * ``image``: an object's bounding-box crop classified among the object classes by its
      global embedding ("a photo of a {}.");
    * ``patch_value`` / ``patch_tokens``: each 8x8-patch of an object classified by its dense
      feature (value path / plain tokens) among all classes.

    Returns:
        accuracies in percent per kind, ``seen`` and ``unseen``.
    """
    classes = folder.classes
    text = ClipTextEncoder(model, clip_tokenizer(arch), ("a photo of a {}.",))
    encoder = ClipImageEncoder(model.visual)
    object_ids = [i for i in range(classes.num_classes) if i != 0]
    object_text = text([classes.names[i] for i in object_ids])
    all_text = text(list(classes.names))
    size = model.visual.image_size[0]
    patch = encoder.patch_size[0]
    hits = {kind: {"seen": [0, 0], "unseen": [0, 0]} for kind in ("image", "patch_value", "patch_tokens")}
    unseen = set(classes.unseen_ids)
    for sample in folder.samples(split)[:max_images]:
        image = read_image(sample.image_path)
        label = read_label(sample.label_path, classes.num_classes, image.shape[:2])
        for class_id in np.unique(label):
            if class_id == 0 or (label == class_id).sum() < 0.05 * label.size:
                continue
            ys, xs = np.nonzero(label == class_id)
            crop = torch.from_numpy(image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]).permute(2, 0, 1)
            crop = F.interpolate(crop[None].float(), size=(size, size), mode="bilinear", align_corners=False)
            embedding = F.normalize(encoder(crop)["cls_embedding"], dim=-1)
            predicted = object_ids[int((embedding @ object_text.t()).argmax())]
            group = hits["image"]["unseen" if class_id in unseen else "seen"]
            group[0] += int(predicted == class_id)
            group[1] += 1
        height, width = (label.shape[0] // patch) * patch, (label.shape[1] // patch) * patch
        tensor = torch.from_numpy(image[:height, :width]).permute(2, 0, 1)[None].float()
        features = encoder(tensor, use_prompts=False, value_features=True)
        patch_labels = torch.from_numpy(label[:height, :width]).unfold(0, patch, patch).unfold(1, patch, patch)
        patch_labels = torch.mode(patch_labels.reshape(*patch_labels.shape[:2], -1), dim=-1).values  # [h, w]
        for kind, key in (("patch_value", "dense_values"), ("patch_tokens", "dense_tokens")):
            dense = F.normalize(features[key][0], dim=0)  # [D, h, w]
            predicted = torch.einsum("dhw,cd->chw", dense, all_text).argmax(0)
            for class_id in patch_labels.unique().tolist():
                if class_id == 0:
                    continue
                inside = patch_labels == class_id
                group = hits[kind]["unseen" if class_id in unseen else "seen"]
                group[0] += int((predicted[inside] == class_id).sum())
                group[1] += int(inside.sum())
    return {
        kind: {group: round(100 * a / max(b, 1), 1) for group, (a, b) in groups.items()}
        for kind, groups in hits.items()
    }
