"""Building open_clip CLIP models from architecture configs and loading their weights.

Architectures are data (:mod:`splitmatch.config.architectures`): an open_clip model-config name
(``ViT-B-16-quickgelu``), a config shipped with splitmatch (``splitmatch/configs/clip/*.json``)
or a path to such a JSON file. The model is always built from that config and the weights are
loaded into it strictly, so a file that does not fit the architecture is refused with the keys
and shapes that differ.

Weight files, in order of preference:

* ``.safetensors`` (no code is ever executed on load);
* open_clip / PyTorch state dicts (``.pt``, ``.pth``, ``.bin``), read with ``weights_only=True``;
* OpenAI's TorchScript archives (``ViT-B-16.pt``). These can only be read by ``torch.jit.load``,
  which runs TorchScript code from the file: load only archives from a source you trust, or
  convert them once with ``splitmatch convert-clip`` and use the ``.safetensors`` result;
* ``packaged:NAME``: weights shipped inside splitmatch (``packaged:world-clip``, the built-in
  world's small CLIP), found wherever the package is installed;
* an open_clip pretrained tag (``openai``, ``laion2b_s34b_b88k``...) when a network is present.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import open_clip
import torch
from open_clip.tokenizer import SimpleTokenizer

from splitmatch import packaged
from splitmatch.config.architectures import clip_model_config
from splitmatch.config.loading import weights_name_is_path
from splitmatch.errors import SplitmatchError

# Keys in OpenAI's archives (and traced modules) that are metadata or derived buffers, not parameters.
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


class ClipWeightsError(SplitmatchError, ValueError):
    """A CLIP architecture or weights file cannot be used."""


def _check_supported(config: dict, arch: str) -> None:
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    if vision.get("timm_model_name") or isinstance(vision.get("layers"), (list, tuple)):
        raise ClipWeightsError(
            f"CLIP architecture '{arch}' has a timm or ResNet image tower; splitmatch needs an open_clip "
            "VisionTransformer (e.g. ViT-B-16-quickgelu)"
        )
    if text.get("hf_model_name") or config.get("custom_text"):
        raise ClipWeightsError(f"CLIP architecture '{arch}' has a Hugging Face text tower; not supported")
    custom_blocks = ("qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn", "scale_fc", "attentional_pool")
    used = [key for key in custom_blocks if vision.get(key)]
    if used or vision.get("pool_type", "tok") != "tok":
        raise ClipWeightsError(
            f"CLIP architecture '{arch}' uses {used or 'non-token pooling'}; splitmatch supports plain "
            "pre-norm ViT blocks with CLS-token pooling"
        )


def build_clip(arch: str, weights: str | None = None) -> open_clip.CLIP:
    """Builds a CLIP model on the CPU in float32, with random weights or the given ones.

    Args:
        arch: model-config name or JSON path (see module docstring).
        weights: ``None`` for random init (tests), a weights file, or an open_clip pretrained tag.

    Returns:
        An ``open_clip.CLIP`` in eval mode.
    """
    config = clip_model_config(arch)
    _check_supported(config, arch)
    model_config = {k: v for k, v in config.items() if k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")}
    if weights is not None and packaged.is_packaged_name(weights):
        weights = str(packaged_weights(weights))
    if weights is not None and not weights_name_is_path(weights):
        return _from_pretrained_tag(arch, weights)
    model = open_clip.CLIP(**model_config)
    if weights is not None:
        load_clip_weights(model, weights)
    return model.eval()


def packaged_weights(name: str) -> Path:
    """The file a ``packaged:NAME`` weights name stands for, inside the installed package."""
    return packaged.require_packaged_file(name, packaged.PACKAGED_WEIGHTS, "weights", ClipWeightsError)


def read_clip_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a CLIP state dict from any supported file, never unpickling arbitrary objects."""
    path = Path(path)
    if path.is_dir():
        raise ClipWeightsError(f"CLIP weights file {path} is a folder; expected a .safetensors, .pt or .bin file")
    if not path.is_file():
        raise ClipWeightsError(
            f"CLIP weights file {path} does not exist: set clip.weights=openai to have open_clip download "
            "OpenAI's weights once (network needed), or download ViT-B-16.pt and convert it with "
            "`splitmatch convert-clip ViT-B-16.pt weights/ViT-B-16.safetensors` (docs/weights.md)"
        )
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ClipWeightsError(f"CLIP weights file {path} is not a valid safetensors file: {error}") from None
    elif is_torchscript_archive(path):
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError as error:
            raise ClipWeightsError(f"CLIP weights file {path} is a damaged TorchScript archive: {error}") from None
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several unrelated types for foreign files
            raise ClipWeightsError(
                f"CLIP weights file {path} is neither safetensors, a TorchScript archive nor a plain tensor "
                f"state dict (refusing to unpickle other objects): {type(error).__name__}: {error}"
            ) from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ClipWeightsError(f"CLIP weights file {path} does not hold a state dict of tensors")
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    for key in _OPENAI_EXTRA_KEYS:
        state.pop(key, None)
    return state


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; plain ``torch.save`` files have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def load_clip_weights(model: open_clip.CLIP, path: str | Path) -> None:
    """Loads a weights file into ``model`` strictly, explaining any mismatch."""
    state = read_clip_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"shapes differ: {', '.join(wrong[:4])}")
        if missing:
            parts.append(f"missing: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected: {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
        raise ClipWeightsError(
            f"CLIP weights file {path} does not fit the configured architecture ({'; '.join(parts)}). "
            "Check clip.arch (OpenAI weights need a '-quickgelu' config, e.g. ViT-B-16-quickgelu)."
        )
    model.load_state_dict({k: v.float() for k, v in state.items()})


def _from_pretrained_tag(arch: str, tag: str) -> open_clip.CLIP:
    # Without a network the hub warns at each retry and open_clip logs the failure before it
    # raises: the one line below says it all, so both loggers stay quiet for this call.
    quieted = {logging.getLogger("huggingface_hub"): logging.ERROR + 1, logging.getLogger(): logging.CRITICAL}
    levels = {logger: logger.level for logger in quieted}
    for logger, level in quieted.items():
        logger.setLevel(level)
    try:
        model = open_clip.create_model(arch, pretrained=tag)
    except Exception as error:  # network and registry failures come in many types
        raise ClipWeightsError(
            f"could not get open_clip pretrained weights '{tag}' for '{arch}' ({type(error).__name__}: {error}). "
            "Without a network, pass a local weights file instead (docs/weights.md); HF_HUB_OFFLINE=1 makes "
            "this fail at once instead of after the hub's retries."
        ) from None
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)
    if not isinstance(model, open_clip.CLIP):
        raise ClipWeightsError(f"open_clip built {type(model).__name__} for '{arch}'; splitmatch needs a CLIP model")
    return model.float().eval()


def clip_tokenizer(arch: str) -> SimpleTokenizer:
    """CLIP's BPE tokenizer with the architecture's context length."""
    context_length = clip_model_config(arch).get("text_cfg", {}).get("context_length", 77)
    return SimpleTokenizer(context_length=context_length)


def save_clip_safetensors(model: open_clip.CLIP, path: str | Path) -> None:
    """Writes a CLIP model's weights as safetensors (used by ``splitmatch convert-clip``)."""
    from safetensors.torch import save

    from splitmatch.storage.files import atomic_write_bytes

    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors))
