"""A "none of these" label: pixels that none of the given names fits get a name of the user's.

Without it every pixel takes one of the names given, so a photo with three named things is
forced into them everywhere. The rule is the one SCLIP, NACLIP and SC-CLIP apply for datasets
with a background class (their ``prob_thd`` and background names, docs/training-free.md): a pixel
gets the label when the best class's share of its scores is below ``below``, or when one of the
``background`` prompts, scored beside the names, beats every name. Both are optional.

It acts as one more score channel, ``max(best background prompt's share, below)``, appended after
the names' and resized with them, so that a label map of any size costs no more memory than
without it; at the inference resolution the argmax is exactly the rule above (a name tied with
``below`` keeps the pixel).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from splitmatch.data.classes import validate_class_names
from splitmatch.errors import ArgumentTypeError, ArgumentValueError


@dataclass(frozen=True)
class NoneOfThese:
    """The "none of these" rule.

    Attributes:
        label: the name given to the pixels no name fits; in a label map its index comes after
            the names' (``len(names)``).
        below: a pixel whose best name holds less than this share of its scores (a softmax
            probability for a training-free model; scores normalised per pixel for a trained one)
            gets the label; 0 never.
        background: prompts scored beside the names ("sky", "wall"...); a pixel one of them wins
            gets the label.
    """

    label: str = "none"
    below: float = 0.0
    background: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise ArgumentValueError(f"the none-of-these label must be a non-empty name, got {self.label!r}")
        if isinstance(self.below, bool) or not isinstance(self.below, numbers.Real):
            raise ArgumentTypeError(f"the none-of-these threshold must be a number, got {self.below!r}")
        object.__setattr__(self, "below", float(self.below))  # a NumPy scalar too, as array code hands it
        if not 0 <= self.below <= 1:
            raise ArgumentValueError(f"the none-of-these threshold must be a share in [0, 1], got {self.below!r}")
        if isinstance(self.background, (str, bytes)) or not isinstance(self.background, (tuple, list)):
            raise ArgumentTypeError(f"background prompts must be a list of names, got {self.background!r}")
        if any(not isinstance(prompt, str) or not prompt.strip() for prompt in self.background):
            raise ArgumentValueError(f"background prompts must be non-empty names, got {list(self.background)!r}")
        # They become class names of the label map (the label) or text prompts: the same rules as any
        # name (length, no control characters that a terminal or a PNG's name list would carry).
        validate_class_names([self.label], where="the none-of-these label")
        if self.background:
            validate_class_names(list(self.background), where="the none-of-these background prompts")
        # In a class list '|' joins a class's names; a background prompt has no synonyms (each prompt
        # already gives the label), so 'sky|air' would reach CLIP as one odd prompt.
        joined = next((prompt for prompt in self.background if "|" in prompt), None)
        if joined is not None:
            separate = ",".join(part.strip() for part in joined.split("|") if part.strip())
            raise ArgumentValueError(
                f"background prompt {joined!r} joins names with '|': each background prompt stands alone, "
                f"give them separated by commas ('{separate}')"
            )
        if not self.below and not self.background:
            raise ArgumentValueError(
                "the none-of-these rule needs a threshold (below > 0) or background prompts, or both"
            )
        object.__setattr__(self, "background", tuple(self.background))

    def check_names(self, class_names: Sequence[Sequence[str]]) -> None:
        """Refuses a label or a background prompt that is also a name of ``class_names`` (per class, its
        name and synonyms; :func:`~splitmatch.data.classes.class_texts`): its pixels would be both."""
        names = {name.strip() for texts in class_names for name in texts}
        clash = [text for text in (self.label, *self.background) if text.strip() in names]
        if clash:
            raise ArgumentValueError(
                f"the none-of-these label and background prompts must differ from the class names; {clash[0]!r} is both"
            )

    def scores(self, scores: torch.Tensor, num_names: int) -> torch.Tensor:
        """Scores over the names and the background prompts -> over the names and the label.

        Args:
            scores: ``[N + P, h, w]`` non-negative, the ``N`` names' first, then the ``P`` prompts'.
            num_names: ``N``.

        Returns:
            ``[N + 1, h, w]`` shares; the last channel is the label's.
        """
        shares = scores / scores.sum(0, keepdim=True).clamp(min=torch.finfo(scores.dtype).tiny)
        if shares.shape[0] > num_names:
            background = shares[num_names:].amax(0, keepdim=True)
        else:
            background = shares.new_zeros((1, *shares.shape[1:]))
        return torch.cat([shares[:num_names], background.clamp(min=self.below)])
