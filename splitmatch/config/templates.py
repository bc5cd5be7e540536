"""Text prompt templates as data: the named sets shipped with splitmatch, or a JSON file of one's own.

``clip.templates`` names a set (``single``, ``ensemble``, ``zegclip-multi``, ``zegclip-single``:
``splitmatch/configs/templates/<name>.json``, each naming where its list comes from) or is a path
to a ``.json`` file holding a list of templates, or an object with a ``templates`` list. A template
holds ``{}`` once, where the class name goes. A class embedding is the normalised mean of the
normalised text embeddings of its templates (:class:`splitmatch.clip.text_encoder.ClipTextEncoder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitmatch import packaged
from splitmatch.config.errors import ConfigError, shown
from splitmatch.storage.files import InvalidJsonError, TextFileError, parse_json, read_text

TEMPLATE_SETS = packaged.PACKAGE_ROOT / "configs" / "templates"  # <name>.json


def template_set_names() -> tuple[str, ...]:
    """The names of the shipped template sets, sorted."""
    return tuple(sorted(path.stem for path in TEMPLATE_SETS.glob("*.json")))


def names_a_template_file(value: str) -> bool:
    """Whether a ``clip.templates`` value is a path to a JSON file (rather than a set's name)."""
    return value.endswith(".json")


def load_templates(value: str) -> tuple[str, ...]:
    """The templates a ``clip.templates`` value stands for.

    Raises:
        ConfigError: an unknown name, a missing or malformed file, or a template without exactly one ``{}``.
    """
    if names_a_template_file(value):
        path, where = Path(value).expanduser(), f"clip.templates file {value}"
        if not path.is_file():
            raise ConfigError(f"{where} does not exist")
    else:
        path, where = TEMPLATE_SETS / f"{value}.json", f"template set '{value}'"
        if "/" in value or "\\" in value or not path.is_file():
            raise ConfigError(
                f"clip.templates must name a template set ({', '.join(template_set_names())}) or a .json file "
                f"holding a list of templates, got {value!r}"
            )
    try:
        data = parse_json(read_text(path, "template file"))
    except (OSError, TextFileError, InvalidJsonError) as error:
        raise ConfigError(f"{where} cannot be read as JSON: {error}") from None
    templates = data.get("templates") if isinstance(data, dict) else data
    if not isinstance(templates, list) or not templates:
        raise ConfigError(f"{where} must hold a non-empty list of templates (or an object with a 'templates' list)")
    for index, template in enumerate(templates):
        if not isinstance(template, str) or template.count("{}") != 1 or _other_braces(template):
            raise ConfigError(
                f"{where}: template {index} must be a string with '{{}}' once where the class name goes "
                f"(and no other braces), got {shown(template)}"
            )
    return tuple(templates)


def _other_braces(template: str) -> bool:
    return "{" in template.replace("{}", "") or "}" in template.replace("{}", "")


@dataclass(frozen=True)
class TemplateChoice:
    """The rule of ``clip.templates``: a shipped set's name or a path to a ``.json`` file (read when checked)."""

    def allows(self, value: Any) -> bool:
        if not isinstance(value, str) or not value.strip():
            return False
        return names_a_template_file(value) or value in template_set_names()

    def describe(self, integer: bool) -> str:
        return f"one of {list(template_set_names())} or a path to a .json list of templates"
