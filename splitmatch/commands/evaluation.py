"""The ``eval`` command: a checkpoint or a training-free model on a split, on a fold's binary episodes
with ``--episodes``, or prediction PNGs made by any method."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from splitmatch.commands.arguments import (
    add_command,
    add_inference_arguments,
    add_model_argument,
    add_peer_scoring_options,
    episode_count,
    fold_number,
    positive_int,
)
from splitmatch.commands.common import (
    TRANSDUCTIVE_NOTE,
    UsageError,
    checkpoint_dataset,
    command_device,
    config_inputs,
    dataset_inputs,
    inference_overrides,
    refuse_options,
)
from splitmatch.storage.files import check_not_input


def add_eval_command(commands) -> None:
    from splitmatch.device import DEVICE_HELP

    p = add_command(
        commands,
        "eval",
        help="evaluate a checkpoint or a training-free model (MaskCLIP, ClearCLIP, SCLIP, NACLIP, SC-CLIP, the "
        "value path), or score prediction PNGs",
    )
    p.add_argument("--checkpoint", help="model.safetensors (or a checkpoint) to evaluate")
    add_model_argument(p)
    p.add_argument("--predictions", help="folder of <stem>.png label maps made by any method")
    p.add_argument(
        "--data-root",
        help="dataset folder (default: the checkpoint's); its classes may differ from "
        "the checkpoint's: they are scored by name",
    )
    p.add_argument(
        "--vocabulary",
        metavar="JSON",
        help="score with this class list instead of the dataset's: "
        "reordered, renamed, a subset or with synonyms, tied to the dataset's classes by name "
        "(docs/open-vocabulary.md)",
    )
    p.add_argument("--split", default=None, help="split to score (default: the config's val split)")
    add_inference_arguments(
        p,
        "amount taken off seen-class scores for the headline numbers (default: the checkpoint's); "
        "0 and 0.1 are always reported as well",
    )
    p.add_argument("--max-images", type=positive_int, help="score only the first N images of the split")
    p.add_argument(
        "--episodes",
        action="store_true",
        help="score a fold's binary test episodes (PASCAL-5i, "
        "COCO-20i protocol: episode mIoU, FB-IoU) instead of a split (docs/benchmarks.md)",
    )
    p.add_argument(
        "--fold",
        type=fold_number,
        help="with --episodes: the fold whose "
        "episodes to score (default: the fold whose classes the checkpoint held out)",
    )
    p.add_argument(
        "--fold-scheme", help="with --episodes: the fold scheme of the folder's folds.json (default: the folder's)"
    )
    p.add_argument(
        "--episode-count",
        type=episode_count,
        help="with --episodes: which stored list, by length (default: 1000; 5000 when prepared)",
    )
    p.add_argument(
        "--background-name", help="with --episodes: the name given beside the episode's class (default: background)"
    )
    add_peer_scoring_options(p, episode_file=True)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an inference setting, repeatable, e.g. inference.candidate_scoring=classes; with a "
        "training-free --model also clip.* and recipe.* (clip.weights=FILE)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from splitmatch.config import DataConfig
    from splitmatch.data.folder import DatasetFolder
    from splitmatch.data.vocabulary import Vocabulary, read_vocabulary
    from splitmatch.evaluation.evaluator import evaluate, evaluate_predictions
    from splitmatch.storage.files import check_output_file

    _check_eval_options(args)  # every combination, before anything is read
    if args.json:
        check_output_file(args.json, "--json")  # before the evaluation, not after it
    record = None
    if args.predictions:
        folder = DatasetFolder(args.data_root)
        _check_json_output(args, folder.root)
        vocabulary = read_vocabulary(args.vocabulary, folder.classes) if args.vocabulary else None
        split = args.split or DataConfig().val_split
        metrics = evaluate_predictions(args.predictions, folder, split, not args.quiet, vocabulary)
    elif args.model != "checkpoint":
        folder, vocabulary, metrics = _evaluate_training_free(args)
    else:
        from splitmatch.config import with_inference_overrides
        from splitmatch.inference.segmentation import candidate_scoring
        from splitmatch.predict.loading import load_segmentor, names_trained_on

        model, record = load_segmentor(args.checkpoint, command_device(args))
        config = with_inference_overrides(record["config"], inference_overrides(args), args.set, source="eval --set")
        if args.episodes:
            return _eval_episodes(args, model, record, config)
        folder = _trained_dataset(args, config, record)
        _check_json_output(args, folder.root)
        if args.vocabulary:
            vocabulary = read_vocabulary(args.vocabulary, folder.classes)
        else:
            vocabulary = folder.evaluation_vocabulary()  # a proxy checkpoint: the proxy's classes
        split = args.split or folder.evaluation_split(config.data.val_split)
        metrics = evaluate(
            model,
            folder,
            split,
            config.inference,
            vocabulary,
            names_trained_on(record),
            max_images=args.max_images,
            progress=not args.quiet,
            candidates=candidate_scoring(config),
        )
        if folder.proxy is not None:
            metrics["proxy"] = folder.proxy.summary() | {"scored_split": split}
    vocabulary = vocabulary or Vocabulary.of_dataset(folder.classes)
    if args.vocabulary:
        metrics["vocabulary"] = {"file": str(args.vocabulary), "left_out": vocabulary.left_out}
    if record is not None:
        metrics["transductive"] = bool(record["config"].train.transductive)
    _print_evaluation(metrics, vocabulary, record)
    if args.json:
        from splitmatch.storage.files import write_json

        write_json(args.json, metrics)
    return 0


def _check_eval_options(args: argparse.Namespace) -> None:
    """What was asked for is one thing: prediction PNGs, a training-free model or a checkpoint, each
    with the options that apply to it; any other option given is refused, never ignored."""
    _check_episode_options(args)
    if args.predictions:
        if args.checkpoint or args.model != "checkpoint":
            raise UsageError("give --predictions DIR, or a model (--checkpoint CKPT or --model), not both")
        if not args.data_root:
            raise UsageError("--predictions needs --data-root")
        no_model = "--predictions scores stored label maps, no model runs"
        refuse_options(args, ("mode", "seen_calibration", "set", "max_images", "device"), no_model, {"device": "auto"})
    elif args.model != "checkpoint":
        if args.checkpoint:
            raise UsageError(f"--model {args.model} is training-free: --checkpoint goes with --model checkpoint only")
        if args.seen_calibration is not None:
            raise UsageError(f"--model {args.model} was trained on no class: --seen-calibration has nothing to act on")
        if args.episodes:
            raise UsageError(
                f"--episodes scores a checkpoint on the folds it was trained for; --model {args.model} "
                "was trained on no fold"
            )
        if not args.data_root:
            raise UsageError(f"--model {args.model} needs --data-root: a training-free model names no dataset")
    elif not args.checkpoint:
        raise UsageError("give --checkpoint CKPT, a training-free --model (maskclip, sclip...) or --predictions DIR")


def _check_json_output(args: argparse.Namespace, data_root) -> None:
    """``--json`` may not be a file this evaluation reads: the checkpoint, the vocabulary, a
    prediction or a file of the dataset."""
    if args.json:
        reads = [args.checkpoint, args.vocabulary, args.predictions, args.episode_file, *dataset_inputs(data_root)]
        check_not_input(args.json, [path for path in reads if path], "--json")


def _trained_dataset(args: argparse.Namespace, config, record: dict):
    """The dataset a checkpoint is scored on: ``--data-root`` or the one it was trained on.

    When its classes are those the checkpoint was trained with, it is opened as training opened
    it (:func:`~splitmatch.data.experiment_folder.open_dataset`): the config's seen / unseen split
    and, for a proxy checkpoint, the proxy. Another dataset is scored by name, as it is.
    """
    from splitmatch.data.experiment_folder import ExperimentFolder, open_dataset

    folder = checkpoint_dataset(args, config)
    if folder.classes.names != record["classes"].names:
        return ExperimentFolder(folder.root)
    return open_dataset(config.data, root=folder.root)


def _evaluate_training_free(args: argparse.Namespace):
    """``eval --model sclip...``: a training-free model on ``--data-root``, every class scored as
    unseen would be (it was trained on none); the dataset's split still names mIoU(S) and mIoU(U)."""
    from splitmatch.config import DataConfig
    from splitmatch.config.training_free import describe_training_free
    from splitmatch.data.folder import DatasetFolder
    from splitmatch.data.vocabulary import read_vocabulary
    from splitmatch.evaluation.evaluator import evaluate
    from splitmatch.predict.loading import load_training_free

    overrides = {"inference": inference_overrides(args)}
    model, config = load_training_free(args.model, command_device(args), args.set, overrides, source="eval --set")
    print(f"model: {describe_training_free(config)}")
    folder = DatasetFolder(args.data_root)
    _check_json_output(args, folder.root)
    if args.json:
        check_not_input(args.json, config_inputs(config), "--json")  # the CLIP weights, a template file
    vocabulary = read_vocabulary(args.vocabulary, folder.classes) if args.vocabulary else None
    metrics = evaluate(
        model,
        folder,
        args.split or DataConfig().val_split,
        config.inference,
        vocabulary,
        trained_names=(),
        max_images=args.max_images,
        progress=not args.quiet,
        compared_calibrations=(),
    )
    metrics.pop("seen_calibration")  # trained on no class: there is nothing to calibrate
    metrics["model"] = {
        "name": config.name,
        "clip": dataclasses.asdict(config.clip),
        "recipe": dataclasses.asdict(config.recipe),
    }
    return folder, vocabulary, metrics


def _print_evaluation(metrics: dict, vocabulary, record: dict | None) -> None:
    """The eval report: what was scored, the tables, per-class IoU, and the split by training names."""
    from splitmatch.commands.training import proxy_banner
    from splitmatch.data.folder import list_some
    from splitmatch.evaluation.metrics import format_class_table, format_name_split_table, format_table

    if "proxy" in metrics:
        print(proxy_banner(metrics["proxy"], metrics["proxy"]["scored_split"]))
    elif record is not None and record["config"].data.proxy.enabled:
        held = record["config"].data.proxy.classes or []
        print(f"proxy checkpoint (held out {', '.join(held)}), scored on another dataset: not a benchmark model")
    classes = vocabulary.classes
    left_out = f" (left out, their pixels ignored: {list_some(vocabulary.left_out)})" if vocabulary.left_out else ""
    print(f"scored with the {classes.num_classes} classes of '{classes.dataset}'{left_out}")
    if not classes.unseen:
        print(f"'{classes.dataset}' defines no unseen classes: mIoU(S) is over all classes, mIoU(U) and hIoU are n/a")
    note = f" ({TRANSDUCTIVE_NOTE})" if metrics.get("transductive") else ""
    if note:
        print(TRANSDUCTIVE_NOTE + "; these are not inductive zero-shot numbers")
    print(format_table({f"result{note}": metrics}))
    print(format_class_table(metrics, set(classes.unseen)))
    calibrations = metrics.get("seen_calibration", {})
    if calibrations:
        print("the same predictions under each seen-class calibration (amount taken off seen-class scores):")
        print(format_table({f"seen calibration {k}{note}": v for k, v in calibrations.items()}))
    if record is None:
        return
    trained_from = record["classes"].dataset
    trained, others = metrics["trained_names"], metrics["other_names"]
    if trained == classes.seen_names:
        print(f"the checkpoint (trained on '{trained_from}') was trained on exactly the seen classes above")
        return
    # A checkpoint scored on classes other than the seen ones it was trained on: say which it knows.
    print(
        f"split by the checkpoint's training vocabulary ('{trained_from}'): {len(trained)} of these "
        f"{classes.num_classes} class names were trained on ({list_some(trained) or 'none'}), {len(others)} "
        f"were not ({list_some(others) or 'none'}); the seen-class calibration applies to the former:"
    )
    print(format_name_split_table({f"seen calibration {k}{note}": v for k, v in calibrations.items()}))


EPISODE_OPTIONS = ("fold", "fold_scheme", "episode_count", "background_name", "episode_file", "episode_size")


def _check_episode_options(args: argparse.Namespace) -> None:
    """``--fold`` and its kin only with ``--episodes``; ``--episodes`` only of a checkpoint, on its val episodes."""
    given = [name for name in EPISODE_OPTIONS if getattr(args, name, None) is not None]
    if not args.episodes:
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} is an option of eval --episodes")
        return
    for name in ("predictions", "vocabulary", "split", "max_images"):
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"--episodes scores the stored episodes of the val split: not with {flag}")


def _eval_episodes(args: argparse.Namespace, model, record: dict, config) -> int:
    """``eval --episodes``: the checkpoint on one fold's binary test episodes (docs/benchmarks.md)."""
    from splitmatch.data.fold_schemes import read_fold_scheme
    from splitmatch.data.published_episodes import fold_episodes
    from splitmatch.evaluation.episode_scoring import (
        DEFAULT_BACKGROUND_NAME,
        check_episode_names,
        describe_false_positives,
        evaluate_episodes,
        evaluation_dict,
        format_fold_score,
    )
    from splitmatch.inference.segmentation import candidate_scoring
    from splitmatch.predict.loading import names_trained_on
    from splitmatch.storage.files import write_json

    folder = checkpoint_dataset(args, config)
    _check_json_output(args, folder.root)
    scheme = read_fold_scheme(folder, args.fold_scheme)
    trained = names_trained_on(record)
    fold = args.fold if args.fold is not None else _checkpoint_fold(scheme, record)
    fold_classes = scheme.fold(fold)
    background = DEFAULT_BACKGROUND_NAME if args.background_name is None else args.background_name
    # the stored list, or a peer's as it stands (docs/benchmarks.md#a-peers-episode-lists)
    episode_file = None if args.episode_file is None else Path(args.episode_file)
    episodes, source = fold_episodes(folder, scheme, fold, args.episode_count, episode_file)
    check_episode_names(folder.classes, episodes, background)
    seen_in_training = [name for name in fold_classes if name in trained]
    if seen_in_training:
        print(f"fold {fold}'s classes {', '.join(seen_in_training)} were seen in training: not a zero-shot score")
    evaluation = evaluate_episodes(
        model,
        folder,
        episodes,
        fold_classes,
        config.inference,
        background,
        trained,
        candidate_scoring(config),
        progress=not args.quiet,
        score_size=args.episode_size,
    )
    score = evaluation.score
    transductive = bool(record["config"].train.transductive)
    note = f" ({TRANSDUCTIVE_NOTE})" if transductive else ""
    size = f", scored at {args.episode_size} x {args.episode_size}" if args.episode_size else ""
    print(
        f"{len(episodes)} episodes of fold {fold} of {scheme.name} ({', '.join(fold_classes)}) from {source}{size}; "
        f"the model was given '{background}' and the episode's class{note}"
    )
    print(format_fold_score(score, f"fold {fold}{note}"))
    print(describe_false_positives(evaluation.false_positives))
    if score.classes_without_episodes:
        print(f"no episode asked for {', '.join(score.classes_without_episodes)}: left out of the mean")
    if args.json:
        result = {
            "protocol": "episodes",
            "scheme": scheme.name,
            "fold": fold,
            "fold_classes": list(fold_classes),
            "episode_count": len(episodes),
            "episode_source": source,
            "episode_size": args.episode_size,
            "background_name": background,
            "seen_calibration": config.inference.seen_calibration,
            "transductive": transductive,
        } | evaluation_dict(evaluation)
        write_json(args.json, result)
    return 0


def _checkpoint_fold(scheme, record: dict) -> int:
    """The fold whose classes the checkpoint held out in training (``--fold`` otherwise)."""
    unseen = set(record["classes"].unseen)
    for index, classes in enumerate(scheme.folds):
        if set(classes) == unseen:
            return index
    shown = ", ".join(sorted(unseen)) or "no class"
    raise UsageError(
        f"the checkpoint held out {shown}, which is no fold of {scheme.name}; "
        f"pass --fold N (0..{len(scheme.folds) - 1})"
    )
