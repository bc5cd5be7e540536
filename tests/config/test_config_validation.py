"""Every config value is checked once, when the config is built, and a checkpoint's record likewise."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from refusals import refused

from splitmatch.cli import main
from splitmatch.config import ConfigError, ExperimentConfig
from splitmatch.config.presets import PRESETS, preset
from splitmatch.config.rules import Flag, check_config, field_rules, setting
from splitmatch.model.build import build_segmentor
from splitmatch.model.checkpoint import save_checkpoint

# (override, words the message must hold): each would crash later or train silently wrong.
BAD_VALUES = [
    ("train.grad_clip=-1", "train.grad_clip must be a finite number >= 0 (0 disables clipping), got -1.0"),
    ("train.lr=0", "train.lr must be a finite number > 0"),
    ("train.lr=.nan", "train.lr must be a finite number"),
    ("train.lr=.inf", "train.lr must be a finite number"),
    ("train.iterations=0", "train.iterations must be an integer in 1.."),
    ("train.iterations=2.5", "train.iterations must be an integer"),
    ("train.batch_size=-4", "train.batch_size must be an integer in 1.."),
    ("train.warmup_iterations=-1", "train.warmup_iterations must be an integer in 0.."),
    ("train.warmup_ratio=0", "train.warmup_ratio must be a finite number in (0, 1]"),
    ("train.eval_every=-1", "train.eval_every must be an integer in 0.."),
    ("train.log_every=0", "train.log_every must be an integer in 1.."),
    ("train.checkpoint_every=0", "train.checkpoint_every must be an integer in 1.."),
    ("train.keep_checkpoints=-2", "train.keep_checkpoints"),
    ("train.seed=-1", "train.seed must be an integer in 0.."),
    ("train.min_lr=1", "train.min_lr (1) must not exceed train.lr"),
    ("train.weight_decay=-0.1", "train.weight_decay must be a finite number >= 0"),
    ("train.amp=fp8", "train.amp must be one of ['none', 'bf16', 'fp16']"),
    ("train.tensorboard=maybe", "train.tensorboard must be true or false"),
    ("train.accumulate_steps=0", "train.accumulate_steps must be an integer in 1.."),
    ("train.accumulate_steps=3", "train.batch_size (2) must split evenly into train.accumulate_steps (3)"),
    ("train.decay_prompts=maybe", "train.decay_prompts must be true or false"),
    ("train.deterministic=maybe", "train.deterministic must be true or false"),
    ("data.pad_fill=grey", "data.pad_fill must be one of ['mean', 'black']"),
    ("pseudo.min_crop_area=1", "pseudo.min_crop_area must be a finite number in [0, 1) (0 keeps every target)"),
    ("pseudo.min_crop_area=-0.1", "pseudo.min_crop_area must be a finite number in [0, 1)"),
    ("inference.amp=fp8", "inference.amp must be one of ['none', 'bf16', 'fp16']"),
    ("inference.candidate_scoring=all", "inference.candidate_scoring must be one of ['classes', 'no_object'"),
    ("inference.candidate_temperature=-0.1", "inference.candidate_temperature must be a finite number >= 0"),
    ("inference.candidate_weight=.inf", "inference.candidate_weight must be a finite number >= 0"),
    ("inference.candidate_mask_confidence=maybe", "inference.candidate_mask_confidence must be true or false"),
    ("pseudo.iterations=0", "pseudo.iterations must be an integer in 1.."),
    ("pseudo.rho=0", "pseudo.rho must be a finite number in (0, 1]"),
    ("pseudo.min_area=1", "pseudo.min_area must be a finite number in [0, 1)"),
    ("pseudo.dedup_iou=1.5", "pseudo.dedup_iou"),
    ("pseudo.max_masks=300", "pseudo.max_masks must be an integer in 1..254"),
    ("pseudo.window_sizes=[]", "pseudo.window_sizes must be a list of at least 1 item"),
    ("pseudo.window_sizes=[2,0]", "pseudo.window_sizes[1] must be an integer in 1.."),
    ("pseudo.region_embedding=box", "pseudo.region_embedding must be one of ['masked_cls', 'crop']"),
    ("pseudo.crop_context=0.5", "pseudo.crop_context must be a finite number in [1, 100]"),
    ("pseudo.components=maybe", "pseudo.components"),
    ("pseudo.input_size=60", "pseudo.input_size must be a multiple of the CLIP patch size 8"),
    ("data.crop_size=63", "data.crop_size must be a multiple of the CLIP patch size 8 (tiny-test), got 63"),
    ("data.cat_max_ratio=-0.5", "data.cat_max_ratio must be a finite number in (0, 1]"),
    ("data.flip_prob=2", "data.flip_prob must be a finite number in [0, 1]"),
    ("data.ratio_range=[2.0,0.5]", "data.ratio_range must be [low, high] with low <= high"),
    ("data.resize_scale=[128]", "data.resize_scale must be a list of exactly 2 items"),
    ("data.num_workers=-1", "data.num_workers must be an integer in 0..1024"),
    ("data.root=", "data.root must be a non-empty string"),
    ("decoder.num_seen_queries=-3", "decoder.num_seen_queries must be an integer in 1.."),
    ("decoder.num_candidate_queries=-1", "decoder.num_candidate_queries must be an integer in 0.."),
    ("decoder.num_candidate_queries=0", "loss.matching=split needs decoder.num_candidate_queries >= 1"),
    ("decoder.hidden_dim=33", "decoder.hidden_dim (33) must be divisible by decoder.num_heads (2)"),
    ("decoder.hidden_dim=100000000", "decoder.hidden_dim must be an integer in 1..65536"),
    ("decoder.logit_temperature=0", "decoder.logit_temperature must be a finite number > 0"),
    ("decoder.mask_upsample=3", "decoder.mask_upsample must be one of [1, 2, 4]"),
    ("decoder.mfe_pool_factors=[1,1]", "decoder.mfe_pool_factors must not repeat a value"),
    ("loss.num_points=0", "loss.num_points must be an integer in 1.."),
    ("loss.weight_dice=-1", "loss.weight_dice must be a finite number >= 0 (0 turns the term off)"),
    ("loss.oversample_ratio=0.5", "loss.oversample_ratio must be a finite number in [1, 100]"),
    ("loss.importance_sample_ratio=1.5", "loss.importance_sample_ratio"),
    ("inference.stride=0", "inference.stride must be an integer in 1.."),
    ("inference.stride=80", "inference.stride (80) must not exceed inference.window (64)"),
    ("inference.window=0", "inference.window must be an integer in 1.."),
    ("inference.window=60", "inference.window must be a multiple of the CLIP patch size 8"),
    ("inference.short_side=-64", "inference.short_side must be an integer in 1.."),
    ("inference.short_side=100", "inference.short_side must be a multiple of the CLIP patch size 8"),
    ("inference.max_long_side=32", "inference.max_long_side (32) must be at least inference.short_side (64)"),
    ("inference.seen_calibration=.nan", "inference.seen_calibration must be a finite number in [0, 1]"),
    ("inference.mode=tiles", "inference.mode must be one of ['slide', 'whole']"),
    ("clip.prompt_layers=9", "clip.prompt_layers must be an integer in 0..3 (tiny-test has 3 blocks)"),
    ("clip.region_layers=0", "clip.region_layers must be an integer in 1.."),
    ("clip.decoder_layers=[0,7]", "clip.decoder_layers must be block indices in 0..2"),
    ("clip.arch=ViT-Q-99", "clip.arch: unknown CLIP architecture 'ViT-Q-99'"),
    (
        "clip.templates=many",
        "clip.templates must be one of ['ensemble', 'maskclip', 'single', 'zegclip-multi', 'zegclip-single']",
    ),
    ("train=5", "train must be a mapping of keys, got 5"),
    ("train.no_such_key=1", "unknown config key 'train.no_such_key'"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES, ids=[case[0] for case in BAD_VALUES])
def test_bad_value_is_refused_with_its_key_and_range_before_anything_runs(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    line = refused(capsys, ["train", "--preset", "tiny", "--quiet", "--set", override, "--out", str(out)])
    assert message in line
    assert not out.exists()  # refused before the run folder was made


def test_every_config_field_has_a_rule_and_every_preset_passes():
    rules = field_rules(ExperimentConfig())
    assert len(rules) > 90 and [key for key, rule in rules.items() if rule is None] == []
    for name in PRESETS:
        preset(name).validate()


def test_a_field_declared_without_its_rule_is_refused():
    @dataclasses.dataclass
    class Section:
        checked: bool = setting(True, Flag())
        unchecked: int = 3

    with pytest.raises(ConfigError, match="config field 'unchecked' has no rule"):
        check_config(Section())
    with pytest.raises(ConfigError, match="checked must be true or false"):
        check_config(Section(checked=1))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not YAML text"),
        (b"train: [1, 2\n", "is not valid YAML (line 2, column 1"),
        (b"- train\n- data\n", "must hold a mapping of sections"),
        (b"just a sentence\n", "must hold a mapping of sections (train:, data:, ...) at top level, not a str"),
        (b"preset: [tiny]\n", "'preset' must name a preset"),
    ],
)
def test_config_file_that_is_not_a_yaml_mapping_gets_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    assert message in refused(capsys, ["train", "--config", str(path), "--out", str(tmp_path / "run")])


def test_config_path_that_is_a_folder(tmp_path, capsys):
    assert "is a folder" in refused(capsys, ["train", "--config", str(tmp_path), "--out", str(tmp_path / "run")])


def _edit_record(path, edit) -> None:
    """Rewrites the JSON record inside a safetensors checkpoint (tensors untouched)."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    record = json.loads(header["__metadata__"]["splitmatch"])
    edit(record)
    header["__metadata__"]["splitmatch"] = json.dumps(record)
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data[8 + length :])


def _set(section: str, key: str, value):
    def edit(record):
        record["config"][section][key] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("inference", "window", 0), "inference.window must be an integer in 1.."),
        (_set("inference", "stride", 0), "inference.stride must be an integer in 1.."),
        (_set("decoder", "hidden_dim", 65536), "do not fit the model its config describes"),
        (_set("decoder", "ffn_dim", 60000), "do not fit the model its config describes"),
        (_set("clip", "arch", "ViT-B-16"), "do not fit the model its config describes"),
        (_set("train", "grad_clip", -1), "train.grad_clip must be"),
        (lambda r: r.update(step=-5), "invalid step -5"),
        (lambda r: r.update(train_classes=["unicorn"]), "invalid train_classes"),
        (lambda r: r["config"].update(clip="tiny"), "clip must be a mapping"),
    ],
)
def test_edited_checkpoint_record_is_refused_before_the_model_is_built(
    tiny_dataset, tmp_path, capsys, monkeypatch, edit, message
):
    config = preset("tiny")
    classes = tiny_dataset.classes
    model = build_segmentor(config.clip, config.decoder)
    path = save_checkpoint(tmp_path / "model.safetensors", model, config, classes, classes.seen_names, 3)
    _edit_record(path, edit)

    import splitmatch.predict.loading as loading

    real_builds = []

    def watched(clip, decoder, **kwargs):
        if torch.empty(0).device.type != "meta":
            real_builds.append(decoder.hidden_dim)
        return build_segmentor(clip, decoder, **kwargs)

    monkeypatch.setattr(loading, "build_segmentor", watched)
    line = refused(capsys, ["eval", "--checkpoint", str(path), "--data-root", str(tiny_dataset.root)])
    assert message in line and "model.safetensors" in line
    assert real_builds == []  # nothing was built at the size the record asked for


def test_eval_and_predict_option_values(tiny_dataset, tmp_path, capsys):
    config = preset("tiny")
    classes = tiny_dataset.classes
    model = build_segmentor(config.clip, config.decoder)
    path = save_checkpoint(tmp_path / "model.safetensors", model, config, classes, classes.seen_names, 3)
    base = ["eval", "--checkpoint", str(path), "--data-root", str(tiny_dataset.root)]
    line = refused(capsys, [*base, "--seen-calibration", "2"])
    assert "inference.seen_calibration must be a finite number in [0, 1]" in line
    for option, value, message in (
        ("--max-images", "-1", "--max-images: must be a positive integer, got -1"),
        ("--seen-calibration", "nan", "--seen-calibration: must be a finite number"),
    ):
        with pytest.raises(SystemExit) as exit_info:  # argparse: usage line and one error line
            main([*base, option, value])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    image = tiny_dataset.root / "images" / "val_000.png"
    predict = ["predict", "--checkpoint", str(path), "--classes", "a,b", "--out", str(tmp_path / "p"), str(image)]
    assert "inference.seen_calibration" in refused(capsys, [*predict, "--seen-calibration", "-3"])
    assert "--predictions needs --data-root" in refused(capsys, ["eval", "--predictions", str(tmp_path)])
    assert "not both" in refused(capsys, [*base, "--predictions", str(tmp_path)])
