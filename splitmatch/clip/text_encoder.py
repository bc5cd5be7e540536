"""CLIP's frozen text tower turned into class embeddings, cached per class list."""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from splitmatch.config.templates import load_templates
from splitmatch.data.classes import ClassEntry, class_texts


def prompt_templates(templates: str) -> tuple[str, ...]:
    """The templates of a ``clip.templates`` value: a shipped set's name or a ``.json`` file.

    ``"single"`` is ``("a photo of a {}.",)``, ``"ensemble"`` CLIP's 80 ImageNet templates,
    ``"zegclip-multi"`` the 15 of ZegCLIP's COCO-Stuff embeddings, ``"zegclip-single"`` its VOC
    template; ``splitmatch/configs/templates/`` names the source of each list.

    Raises:
        ConfigError: an unknown name or an unusable file.
    """
    return load_templates(templates)


class ClipTextEncoder(nn.Module):
    """Class names -> normalised embeddings ``[C, D]``, averaged over prompt templates.

    A class given several names (a name and its synonyms) gets the normalised mean of its
    names' embeddings.

    The tower is frozen, so results are cached per (class list, device); the cache is cleared
    whenever the module moves. Text tower parameters stay inside the wrapped CLIP model so a
    checkpoint carries them and ``predict`` can embed any vocabulary.
    """

    def __init__(self, clip: open_clip.CLIP, tokenizer: SimpleTokenizer, templates: tuple[str, ...]) -> None:
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.pool_type = clip.text_pool_type
        self.eos_id = getattr(clip, "text_eos_id", None)
        self.tokenizer = tokenizer
        self.templates = tuple(templates)
        self.requires_grad_(False)
        self._cache: dict[tuple, torch.Tensor] = {}

    def _apply(self, fn, recurse=True):
        self._cache.clear()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> ClipTextEncoder:
        return super().train(False)  # frozen: always eval

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """``len(texts)`` strings -> normalised ``[N, D]``, in chunks to bound memory."""
        device = self.token_embedding.weight.device
        outputs = []
        for start in range(0, len(texts), 256):
            tokens = self.tokenizer(texts[start : start + 256]).to(device)  # [n, context]
            length = tokens.shape[1]
            if self.attn_mask is not None and self.pool_type == "argmax":
                # Under the causal mask no position up to the end token reads a later one, so the
                # padding after the longest text can be dropped: 7x less work for short prompts.
                length = int(tokens.argmax(-1).max()) + 1
                tokens = tokens[:, :length]
            mask = self.attn_mask[:length, :length] if self.attn_mask is not None else None
            x = self.token_embedding(tokens) + self.positional_embedding[:length]
            x = self.ln_final(self.transformer(x, attn_mask=mask))  # [n, length, W]
            x = open_clip.transformer.text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)
            x = self.text_projection(x) if isinstance(self.text_projection, nn.Linear) else x @ self.text_projection
            outputs.append(F.normalize(x.float(), dim=-1))
        return torch.cat(outputs)

    def forward(self, class_names: Sequence[ClassEntry]) -> torch.Tensor:
        """Class embeddings ``[C, D]``.

        Args:
            class_names: per class, a name or a sequence of names (name, then synonyms).

        Returns:
            per class, each name's embedding is the normalised mean over templates; a class of
            several names gets the normalised mean of its names' embeddings.
        """
        classes = class_texts(class_names)
        key = (classes, self.token_embedding.weight.device)
        if key not in self._cache:
            names = [name for names in classes for name in names]
            texts = [template.format(name) for name in names for template in self.templates]
            per_name = self.encode_texts(texts).view(len(names), len(self.templates), -1)
            per_name = F.normalize(per_name.mean(dim=1), dim=-1)  # [N, D]
            rows, start = [], 0
            for names_of_class in classes:
                block = per_name[start : start + len(names_of_class)]  # [n, D]
                start += len(names_of_class)
                # One name: its embedding as is (bitwise what a plain list gives).
                rows.append(block[0] if len(block) == 1 else F.normalize(block.mean(dim=0), dim=-1))
            self._cache[key] = torch.stack(rows)
        return self._cache[key]
