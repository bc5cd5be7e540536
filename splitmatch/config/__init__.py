"""Typed experiment configuration: the schema, its rules, and how a run's config is built.

* :mod:`~splitmatch.config.schema`: one dataclass per section, every field with its default,
  its rule and what it means;
* :mod:`~splitmatch.config.rules`: the checks (each field's rule, then the relations between fields);
* :mod:`~splitmatch.config.loading`: YAML files, ``key=value`` overrides, typed merging, paths;
* :mod:`~splitmatch.config.presets`: the named presets and :func:`load_config` (preset, file, overrides);
* :mod:`~splitmatch.config.architectures`: CLIP architectures as data (sizes are checked against them).

The config floor imports nothing of splitmatch but :mod:`splitmatch.packaged` and
:mod:`splitmatch.storage.files`; every other part may import it.
"""

from splitmatch.config.architectures import ArchitectureError, clip_geometry, clip_model_config
from splitmatch.config.errors import ConfigError
from splitmatch.config.loading import (
    PATH_KEYS,
    describe_path,
    from_dict,
    merge,
    parse_override,
    read_yaml,
    resolve_paths,
    save_yaml,
    to_dict,
    weights_name_is_path,
    with_inference_overrides,
)
from splitmatch.config.presets import PRESETS, describe_preset, load_config, preset, register_preset
from splitmatch.config.schema import (
    ClipConfig,
    DataConfig,
    DecoderConfig,
    ExperimentConfig,
    InferenceConfig,
    LossConfig,
    PseudoMaskConfig,
    TrainConfig,
)

__all__ = [
    "PATH_KEYS",
    "PRESETS",
    "ArchitectureError",
    "ClipConfig",
    "ConfigError",
    "DataConfig",
    "DecoderConfig",
    "ExperimentConfig",
    "InferenceConfig",
    "LossConfig",
    "PseudoMaskConfig",
    "TrainConfig",
    "clip_geometry",
    "clip_model_config",
    "describe_path",
    "describe_preset",
    "from_dict",
    "load_config",
    "merge",
    "parse_override",
    "preset",
    "read_yaml",
    "register_preset",
    "resolve_paths",
    "save_yaml",
    "to_dict",
    "weights_name_is_path",
    "with_inference_overrides",
]
