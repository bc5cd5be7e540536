"""The training loop, single-process or under ``torchrun``, top to bottom.

Single process::

    splitmatch train --config configs/voc.yaml --out runs/voc

Several GPUs on one machine (the same code; DDP from the ``torchrun`` environment)::

    torchrun --nproc_per_node 4 -m splitmatch train --config configs/voc.yaml --out runs/voc

A killed run continues exactly with ``--resume``: weights, optimizer, schedule, RNG, data
order and augmentation all come back to where the last checkpoint left them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from splitmatch import distributed as dist
from splitmatch.config import ConfigError, ExperimentConfig, resolve_paths
from splitmatch.data.dataset import SegmentationDataset, collate_segmentation
from splitmatch.data.folder import DatasetFolder
from splitmatch.data.transforms import build_train_transform
from splitmatch.device import mixed_precision
from splitmatch.evaluation.evaluator import evaluate
from splitmatch.inference.segmentation import candidate_scoring
from splitmatch.losses.criterion import SetCriterion
from splitmatch.matching.matcher import HungarianMatcher, SplitMatcher
from splitmatch.model.build import build_segmentor
from splitmatch.pseudo.build_cache import fill_cache, open_cache
from splitmatch.storage import checkpoint as ckpt
from splitmatch.train import state as training_state
from splitmatch.train.micro_batches import DivergenceWatch, split_batch
from splitmatch.train.optim import build_optimizer, build_schedule
from splitmatch.train.run_folder import RunLock, open_run, remove_stale_temporaries
from splitmatch.train.run_record import RunRecord
from splitmatch.train.sampler import StepBatchSampler
from splitmatch.train.targets import build_targets, move_targets


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def build_criterion(config: ExperimentConfig) -> SetCriterion:
    """The criterion with the matcher ``loss.matching`` names."""
    loss = config.loss
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
    )


def autocast_context(config: ExperimentConfig, device: torch.device):
    """bf16/fp16 autocast on CUDA as ``train.amp`` asks; float32 everywhere else."""
    return mixed_precision(device, config.train.amp)


def build_loader(dataset, sampler: StepBatchSampler, num_workers: int, device: torch.device) -> DataLoader:
    """The training loader: batches as the sampler says, pinned for a CUDA device."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_segmentation,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=device.type == "cuda",  # non_blocking copies overlap with compute only from pinned memory
        generator=torch.Generator(),  # its own generator: the global RNG stays as resumed
    )


def use_deterministic_algorithms() -> None:
    """Deterministic kernels for the rest of the process (``train.deterministic``)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read by cuBLAS when it starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def mean_colour(model) -> tuple[int, int, int]:
    """The image encoder's normalisation mean as an RGB colour in 0..255 (zero once normalised)."""
    return tuple(int(round(v)) for v in model.image_encoder.pixel_mean.flatten().tolist())


def build_train_dataset(config: ExperimentConfig, folder: DatasetFolder, pseudo_cache, model) -> SegmentationDataset:
    """The training split as training reads it: seen classes only (inductive), the training
    transform of ``config.data`` and, for Split Matching, the pseudo masks of ``pseudo_cache``."""
    data = config.data
    return SegmentationDataset(
        folder,
        data.train_split,
        inductive=True,
        pseudo_masks=pseudo_cache,
        base_seed=config.train.seed,
        transform=build_train_transform(
            data.crop_size,
            tuple(data.resize_scale),
            tuple(data.ratio_range),
            data.cat_max_ratio,
            data.flip_prob,
            data.photometric,
            pad_fill=mean_colour(model) if data.pad_fill == "mean" else (0, 0, 0),
        ),
    )


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    config: ExperimentConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    progress_position: int = 0,
) -> dict:
    """Trains a model and evaluates it on the validation split.

    Writes into ``out_dir``: ``config.yaml``, ``environment.json``, ``metrics.jsonl``,
    ``checkpoints/step_*.safetensors`` (the last ``keep_checkpoints``), ``model.safetensors``
    (final weights) and ``eval.json``. ``progress_position`` is the terminal line of the progress
    bars, for runs that train side by side.

    The folder is locked for the run (``run.lock``); a folder that holds a run is refused unless
    ``resume``, and every check happens before anything in it changes
    (:mod:`splitmatch.train.run_folder`).

    Returns:
        the validation metrics (:func:`splitmatch.evaluation.metrics.summarize`).
    """
    config = resolve_paths(config)  # the run folder and checkpoints then work from any folder
    device = dist.setup_from_environment()
    if config.train.deterministic:
        use_deterministic_algorithms()
    with RunLock(out_dir, active=dist.is_main_process()) as lock:
        return _train(config, Path(out_dir), resume, progress, progress_position, device, lock)


def _train(
    config: ExperimentConfig,
    out_dir: Path,
    resume: bool,
    progress: bool,
    progress_position: int,
    device: torch.device,
    lock: RunLock,
) -> dict:
    seed_everything(config.train.seed)  # the same initial weights on every rank
    main = dist.is_main_process()
    checkpoint_dir = out_dir / "checkpoints"
    folder = DatasetFolder(config.data.root)
    classes = folder.classes
    for split in (config.data.train_split, config.data.val_split):  # a missing file fails now, not at the end
        folder.samples(split)
    if config.train.batch_size % dist.world_size():
        raise ConfigError(
            f"train.batch_size={config.train.batch_size} (the global batch) does not divide over "
            f"{dist.world_size()} processes"
        )
    start = open_run(config, out_dir, resume, lock, classes)  # checks only: the folder is unchanged

    train_names = classes.seen_names  # inductive: unseen names never reach training
    model = build_segmentor(config).to(device)
    torch.manual_seed(config.train.seed + dist.rank())  # independent point sampling per rank
    criterion = build_criterion(config)

    pseudo_cache = None
    if config.loss.matching == "split":
        pseudo_cache = open_cache(config, folder, model.image_encoder)
        fill_cache(pseudo_cache, model.image_encoder, config, folder, config.data.train_split, progress=progress)
        if dist.is_distributed():
            torch.distributed.barrier()

    optimizer = build_optimizer(model, config.train)
    schedule = build_schedule(optimizer, config.train)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.train.amp == "fp16")
    start_step = start.step
    if start.checkpoint is not None:
        ckpt.load_model_state(model, start.tensors, start.checkpoint)
        start_step = training_state.restore_training_state(
            start.tensors, start.record, optimizer, schedule, scaler, dist.rank(), device
        )
        start.tensors = None  # the model and optimizer hold their own copies now

    # Every check passed: from here on the run writes into its folder.
    lock.commit()
    if main:
        for path in remove_stale_temporaries(out_dir):
            print(f"splitmatch: removed {path}, left by an interrupted write", file=sys.stderr)
    record = RunRecord(out_dir, config, active=main)
    if resume:
        record.truncate_after(start_step)

    data = config.data
    dataset = build_train_dataset(config, folder, pseudo_cache, model)
    accumulate = config.train.accumulate_steps
    if config.train.batch_size % (accumulate * dist.world_size()):
        raise ConfigError(
            f"train.batch_size {config.train.batch_size} does not split into train.accumulate_steps "
            f"({accumulate}) x {dist.world_size()} processes equal micro-batches"
        )
    sampler = StepBatchSampler(
        len(dataset),
        config.train.batch_size,
        dist.rank(),
        dist.world_size(),
        config.train.seed,
        start_step,
        config.train.iterations,
    )
    loader = build_loader(dataset, sampler, data.num_workers, device)
    network = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if dist.is_distributed()
        else model
    )
    class_embeddings = model.encode_classes([classes.texts[i] for i in classes.seen_ids])  # names + synonyms
    trainable = [p for p in model.parameters() if p.requires_grad]
    query_group = model.query_decoder.query_group.cpu()
    candidates = candidate_scoring(config)
    watch = DivergenceWatch(device)
    advice = f"The last good checkpoint in {checkpoint_dir} is kept: lower train.lr and resume."

    def stop_if_diverged() -> None:
        bad = watch.first_bad_step()
        if bad is not None:
            raise NonFiniteLossError(f"loss became non-finite at step {bad[0]} ({bad[1]}); stopping. {advice}")

    model.train()
    bar = tqdm(
        total=config.train.iterations,
        initial=start_step,
        desc=f"train {config.name}",
        disable=not (progress and main),
        position=progress_position,
    )
    started = time.time()
    for step, batch in enumerate(loader, start=start_step):
        done = step + 1
        micro_batches = split_batch(batch, accumulate)
        targets = [
            move_targets(
                build_targets(
                    part["label"],
                    classes.seen_ids,
                    part.get("pseudo_index") if pseudo_cache is not None else None,
                    part.get("pseudo_embeddings"),
                    ignore_index=classes.ignore_index,
                    min_pseudo_area=config.pseudo.min_crop_area,
                ),
                device,
            )
            for part in micro_batches
        ]  # built on the CPU: no device synchronisation for unique() and the like
        normalisers = criterion.normalisers([t for part in targets for t in part], query_group, device)
        optimizer.zero_grad(set_to_none=True)
        terms: dict[str, torch.Tensor] = {}
        for index, (part, part_targets) in enumerate(zip(micro_batches, targets)):
            last = index == len(micro_batches) - 1
            # DDP all-reduces the gradients once per step, in the last micro-batch's backward.
            with network.no_sync() if network is not model and not last else contextlib.nullcontext():
                with autocast_context(config, device):
                    outputs = network(part["image"].to(device, non_blocking=True), class_embeddings)
                try:
                    losses = criterion(outputs, part_targets, normalisers)
                except FloatingPointError as error:  # the matcher refuses non-finite costs
                    stop_if_diverged()  # names the step whose loss went bad first, if one did
                    raise NonFiniteLossError(f"training diverged at step {done}: {error}. {advice}") from None
                scaler.scale(losses["loss"]).backward()
            for name, value in losses.items():
                terms[name] = terms[name] + value.detach() if name in terms else value.detach()
        watch.update(done, terms)
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.train.grad_clip or float("inf"))
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        bar.update(1)

        if done % config.train.log_every == 0 or done == config.train.iterations:
            stop_if_diverged()
            # Every rank reaches this line at the same steps; the mean over ranks is the global-batch loss.
            entry = {
                "step": done,
                "lr": optimizer.param_groups[0]["lr"],
                "grad_norm": grad_norm.item(),
                "seconds": round(time.time() - started, 2),
            }
            entry.update({k: (dist.all_reduce_sum(v) / dist.world_size()).item() for k, v in terms.items()})
            record.log(entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
        if done % config.train.checkpoint_every == 0 or done == config.train.iterations:
            stop_if_diverged()
            rng = training_state.rng_states(device)  # every process's generators: a collective call
            if main:
                training_state.save_training_checkpoint(
                    training_state.checkpoint_path(checkpoint_dir, done),
                    model,
                    config,
                    classes,
                    train_names,
                    done,
                    optimizer,
                    schedule,
                    rng=rng,
                    grad_scaler=scaler.state_dict() if scaler.is_enabled() else None,
                )
                training_state.prune_checkpoints(checkpoint_dir, config.train.keep_checkpoints)
        if config.train.eval_every and done % config.train.eval_every == 0 and done < config.train.iterations:
            stop_if_diverged()
            metrics = evaluate(model, folder, data.val_split, config.inference, progress=False, candidates=candidates)
            record.log({"step": done, "eval": metrics})
    bar.close()
    stop_if_diverged()

    if main:
        ckpt.save_checkpoint(
            out_dir / "model.safetensors", model, config, classes, train_names, config.train.iterations
        )
    metrics = evaluate(
        model,
        folder,
        data.val_split,
        config.inference,
        progress=progress,
        progress_position=progress_position,
        candidates=candidates,
    )
    record.write("eval.json", metrics)
    record.log({"step": config.train.iterations, "eval": metrics})
    return metrics
