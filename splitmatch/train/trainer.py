"""The training loop, single-process or under ``torchrun``: setup, then the loop, then the final model.

Single process::

    splitmatch train --config configs/voc.yaml --out runs/voc

Several GPUs on one machine (the same code; DDP from the ``torchrun`` environment)::

    torchrun --nproc_per_node 4 -m splitmatch train --config configs/voc.yaml --out runs/voc

A killed run continues exactly with ``--resume``: weights, optimizer, schedule, RNG, data
order and augmentation all come back to where the last checkpoint left them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from splitmatch import distributed as dist
from splitmatch.config import ConfigError, ExperimentConfig, merge, resolve_paths
from splitmatch.data.check import check_run_images
from splitmatch.data.experiment_folder import ExperimentFolder, open_dataset
from splitmatch.data.fold_schemes import BACKGROUND
from splitmatch.data.folder import list_some
from splitmatch.data.loader_workers import resolve_num_workers
from splitmatch.evaluation.evaluator import evaluate
from splitmatch.inference.segmentation import candidate_scoring
from splitmatch.model import checkpoint as ckpt
from splitmatch.model.build import build_segmentor
from splitmatch.model.segmentor import SplitMatchSegmentor
from splitmatch.pseudo.build_cache import check_cache_folder, fill_cache, open_cache
from splitmatch.pseudo.cache import PseudoMaskCache
from splitmatch.train import state
from splitmatch.train.data import build_loader, build_train_dataset, pad_colour
from splitmatch.train.optim import build_optimizer, build_schedule
from splitmatch.train.reproducibility import seed_everything, use_deterministic_algorithms
from splitmatch.train.run_folder import (
    RunFolderError,
    RunLock,
    RunStart,
    inspect_run,
    open_run,
    remove_stale_temporaries,
)
from splitmatch.train.run_record import RunRecord
from splitmatch.train.sampler import StepBatchSampler
from splitmatch.train.step import TrainingStep, build_criterion
from splitmatch.train.transductive import check_transductive, marks_unseen


def train(
    config: ExperimentConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    progress_position: int = 0,
) -> dict:
    """Trains a model and evaluates it on the validation split.

    Writes into ``out_dir``: ``config.yaml``, ``environment.json``, ``split.json`` (the classes
    training saw and, for a proxy run, the proxy), ``metrics.jsonl``,
    ``checkpoints/step_*.safetensors`` (the last ``keep_checkpoints``), ``model.safetensors``
    (final weights) and ``eval.json``.

    The dataset is :func:`splitmatch.data.experiment_folder.open_dataset`'s: the seen / unseen
    split ``data.unseen`` or ``data.unseen_fraction`` asks for, and with ``data.proxy.enabled`` a
    pseudo-unseen proxy, trained on the training split less its validation images and scored on
    those (docs/protocols.md). ``progress_position`` is the terminal line of the progress
    bars, for runs that train side by side.

    The folder is locked for the run (``run.lock``); a folder that holds a run is refused unless
    ``resume``, and every check happens before anything in it changes
    (:mod:`splitmatch.train.run_folder`).

    Returns:
        the validation metrics (:func:`splitmatch.evaluation.metrics.summarize`); a proxy run's
        also name the proxy (``proxy``).
    """
    config = resolve_paths(config)  # the run folder and checkpoints then work from any folder
    device = dist.setup_from_environment()
    if config.train.deterministic:
        use_deterministic_algorithms()
    with RunLock(out_dir, active=dist.is_main_process()) as lock:
        run = set_up(config, Path(out_dir), resume, lock, device, progress)
        train_loop(run, progress, progress_position)
        return finish(run, progress, progress_position)


@dataclass
class Run:
    """A run as set up: what the loop and the final evaluation need."""

    config: ExperimentConfig
    out_dir: Path
    folder: ExperimentFolder
    model: SplitMatchSegmentor
    step: TrainingStep
    loader: torch.utils.data.DataLoader
    record: RunRecord
    start_step: int
    device: torch.device

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"


def set_up(config: ExperimentConfig, out_dir: Path, resume: bool, lock: RunLock, device, progress: bool) -> Run:
    """Checks everything, builds the model, criterion, optimizer, training step and data, and only
    then writes into the folder: a value that fails anywhere in the setup leaves it as it was."""
    seed_everything(config.train.seed)  # the same initial weights on every rank
    folder = open_dataset(config.data)
    config = with_held_out_classes(config, folder)
    check_inputs(config, folder)
    start = open_run(config, out_dir, resume, lock, folder.classes)  # checks only: the folder is unchanged

    model = build_segmentor(config.clip, config.decoder).to(device)
    torch.manual_seed(config.train.seed + dist.rank())  # independent point sampling per rank
    criterion = build_criterion(config.loss)
    use_pseudo_masks = config.loss.matching == "split"
    optimizer = build_optimizer(model, config.train)
    schedule = build_schedule(optimizer, config.train)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.train.amp == "fp16")
    start_step = restore(start, model, optimizer, schedule, scaler, device)
    network = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if dist.is_distributed()
        else model
    )
    if config.train.compile:  # DDP's gradient hooks stay outside the compiled graph
        network = torch.compile(network)
    advice = f"The last good checkpoint in {out_dir / 'checkpoints'} is kept: lower train.lr and resume."
    # The step encodes the training names: a name the text encoder refuses stops the run here.
    step = TrainingStep(
        model,
        network,
        criterion,
        optimizer,
        schedule,
        scaler,
        config,
        folder.classes,
        device,
        use_pseudo_masks=use_pseudo_masks,
        advice=advice,
    )
    pseudo_cache = prepare_pseudo_masks(config, folder, model, progress) if use_pseudo_masks else None

    # Every check passed: from here on the run writes into its folder.
    lock.commit()
    if dist.is_main_process():
        for path in remove_stale_temporaries(out_dir):
            print(f"splitmatch: removed {path}, left by an interrupted write", file=sys.stderr)
    record = RunRecord(out_dir, config, active=dist.is_main_process(), split=folder.record())
    if resume:
        record.truncate_after(start_step)

    dataset = build_train_dataset(
        config.data,
        folder,
        pseudo_cache,
        config.train.seed,
        pad_colour(config.data, model),
        clip_pseudo_masks=config.pseudo.clip_to_unannotated,
        mark_unseen=marks_unseen(config.train),
    )
    train = config.train
    sampler = StepBatchSampler(
        len(dataset), train.batch_size, dist.rank(), dist.world_size(), train.seed, start_step, train.iterations
    )
    workers = resolve_num_workers(config.data.num_workers, train.batch_size // dist.world_size())
    loader = build_loader(dataset, sampler, workers, device)
    return Run(config, out_dir, folder, model, step, loader, record, start_step, device)


def check_run(config: ExperimentConfig, out_dir: str | Path, resume: bool = False, images: bool = True) -> None:
    """Every check :func:`train` makes before it writes, made now and writing nothing: the config,
    the dataset (its files too, unless ``images`` is False because another run of the same command
    checked them), the class split, and the run folder against the request (no lock is taken).

    Commands that train several runs (``seeds``, ``folds``) call this for each before the first trains.
    """
    config = resolve_paths(config)
    folder = open_dataset(config.data)
    config = with_held_out_classes(config, folder)
    check_inputs(config, folder, images)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"run folder {out_dir} exists and is not a folder")
    inspect_run(config, out_dir, resume, folder.classes)


def with_held_out_classes(config: ExperimentConfig, folder: ExperimentFolder) -> ExperimentConfig:
    """A proxy run's config with the seen classes it holds out written into ``data.proxy.classes``,
    so that ``config.yaml`` and every checkpoint name them (a draw by ``data.proxy.seed`` resolves
    to the same names again on ``--resume``)."""
    if folder.proxy is None:
        return config
    return merge(config, {"data": {"proxy": {"classes": list(folder.proxy.held_out)}}}).validate()


def check_inputs(config: ExperimentConfig, folder: ExperimentFolder, images: bool = True) -> None:
    """What can be checked before the run folder is touched: a seen class to train on, the splits'
    files (``images``: every file, the evaluation images decoded), the batch's division, the
    unseen-pixel convention and a transductive run's unseen classes."""
    if not folder.classes.seen_names:
        raise ConfigError(
            f"the class split leaves no seen class to train on: every class of {folder.root} is unseen "
            f"({list_some(list(folder.classes.unseen))}); choose fewer unseen classes (data.unseen)"
        )
    if config.data.unseen_pixels == BACKGROUND and BACKGROUND not in folder.classes.names:
        raise ConfigError(
            f"data.unseen_pixels=background labels unseen pixels as the class '{BACKGROUND}', which "
            f"{folder.root} does not have (classes: {', '.join(folder.classes.names[:8])}...); use ignore"
        )
    check_transductive(config.train, folder.classes)
    check_cache_folder(config.pseudo, folder.root)
    splits = (config.data.train_split, folder.evaluation_split(config.data.val_split))
    train, processes = config.train, dist.world_size()
    if train.batch_size % processes:
        raise ConfigError(
            f"train.batch_size={train.batch_size} (the global batch) does not divide over {processes} processes"
        )
    if train.batch_size % (train.accumulate_steps * processes):
        raise ConfigError(
            f"train.batch_size {train.batch_size} does not split into train.accumulate_steps "
            f"({train.accumulate_steps}) x {processes} processes equal micro-batches"
        )
    # Every file of both splits, now, not at the end: the evaluation images are decoded whole,
    # since training reads them only after its last step.
    if images:
        check_run_images(folder, splits, decode=splits[1:])


def prepare_pseudo_masks(
    config: ExperimentConfig, folder: ExperimentFolder, model: SplitMatchSegmentor, progress: bool
) -> PseudoMaskCache:
    """The training split's pseudo-mask cache, filled where it lacks entries (shared by every rank)."""
    cache = open_cache(config.pseudo, config.clip, folder, model.image_encoder)
    fill_cache(cache, model.image_encoder, config.pseudo, folder, config.data.train_split, progress=progress)
    if dist.is_distributed():
        torch.distributed.barrier()
    return cache


def restore(start: RunStart, model, optimizer, schedule, scaler, device) -> int:
    """Loads a resumed run's weights and training state; returns the step to start from."""
    if start.checkpoint is None:
        return start.step
    ckpt.load_model_state(model, start.tensors, start.checkpoint)
    step = state.restore_training_state(start.tensors, start.record, optimizer, schedule, scaler, dist.rank(), device)
    start.tensors = None  # the model and optimizer hold their own copies now
    return step


def train_loop(run: Run, progress: bool, progress_position: int) -> None:
    """Steps from ``run.start_step`` to ``train.iterations``: log, checkpoint and evaluate as the config says."""
    train = run.config.train
    run.model.train()
    bar = tqdm(
        total=train.iterations,
        initial=run.start_step,
        desc=f"train {run.config.name}",
        disable=not (progress and dist.is_main_process()),
        position=progress_position,
    )
    started = time.time()
    for step, batch in enumerate(run.loader, start=run.start_step):
        done = step + 1
        terms, grad_norm = run.step(batch, done)
        bar.update(1)
        last = done == train.iterations
        if done % train.log_every == 0 or last:
            run.step.stop_if_diverged()
            entry = log_entry(run, done, terms, grad_norm, time.time() - started)
            run.record.log(entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
        if done % train.checkpoint_every == 0 or last:
            run.step.stop_if_diverged()
            save_step_checkpoint(run, done)
        if train.eval_every and done % train.eval_every == 0 and not last:
            run.step.stop_if_diverged()
            run.record.log({"step": done, "eval": evaluate_run(run, progress=False)})
    bar.close()
    run.step.stop_if_diverged()


def log_entry(run: Run, done: int, terms: dict[str, torch.Tensor], grad_norm: torch.Tensor, seconds: float) -> dict:
    """The metrics line of step ``done``; the loss terms are means over ranks, the global batch's."""
    entry = {
        "step": done,
        "lr": run.step.optimizer.param_groups[0]["lr"],
        "grad_norm": grad_norm.item(),
        "seconds": round(seconds, 2),
    }
    # Every rank reaches this line at the same steps.
    entry.update({k: (dist.all_reduce_sum(v) / dist.world_size()).item() for k, v in terms.items()})
    if run.config.train.transductive:  # the step's pixels labelled by the model itself, over every rank
        pixels = torch.tensor(run.step.self_trained_pixels, dtype=torch.int64, device=run.device)
        entry["self_trained_pixels"] = int(dist.all_reduce_sum(pixels).item())
    return entry


def save_step_checkpoint(run: Run, done: int) -> None:
    """Step ``done``'s checkpoint (weights, optimizer, schedule, every rank's RNG); the oldest beyond ``keep`` go."""
    rng = state.rng_states(run.device)  # every process's generators: a collective call
    if not dist.is_main_process():
        return
    step, config, classes = run.step, run.config, run.folder.classes
    state.save_training_checkpoint(
        state.checkpoint_path(run.checkpoint_dir, done),
        run.model,
        config,
        classes,
        classes.seen_names,
        done,
        step.optimizer,
        step.schedule,
        rng=rng,
        grad_scaler=step.scaler.state_dict() if step.scaler.is_enabled() else None,
    )
    state.prune_checkpoints(run.checkpoint_dir, config.train.keep_checkpoints)


def evaluate_run(run: Run, progress: bool, progress_position: int = 0) -> dict:
    """The model on the validation split, with its config's inference settings and candidate scoring.

    A proxy run is scored on the proxy's validation images with the proxy's classes (the held-out
    ones as unseen, the benchmark's unseen ones left out); its metrics carry ``proxy``. A run that
    saw every class is scored with the dataset's own split (:meth:`ExperimentFolder.evaluation_vocabulary`).
    """
    config, folder = run.config, run.folder
    metrics = evaluate(
        run.model,
        folder,
        folder.evaluation_split(config.data.val_split),
        config.inference,
        folder.evaluation_vocabulary(),
        trained_names=folder.classes.seen_names,
        progress=progress,
        progress_position=progress_position,
        candidates=candidate_scoring(config),
    )
    if folder.proxy is not None:
        metrics["proxy"] = folder.proxy.summary()
    return metrics


def finish(run: Run, progress: bool, progress_position: int) -> dict:
    """Writes ``model.safetensors``, evaluates it and records ``eval.json`` (with ``transductive``, whether
    unseen names were used in training); returns the metrics."""
    config, classes = run.config, run.folder.classes
    if dist.is_main_process():
        ckpt.save_checkpoint(
            run.out_dir / "model.safetensors", run.model, config, classes, classes.seen_names, config.train.iterations
        )
    metrics = evaluate_run(run, progress, progress_position)
    metrics["transductive"] = bool(config.train.transductive)  # docs/protocols.md: said beside every number
    run.record.write("eval.json", metrics)
    run.record.log({"step": config.train.iterations, "eval": metrics})
    return metrics
