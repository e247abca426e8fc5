"""Whose terms govern a model: a base model named for training or ``licenses check``, or the model
that generated a source's records.

In order: the model card (a local folder's ``README.md``, or the card in the Hugging Face cache;
nothing is downloaded), whose ``license:`` (or ``license_name:`` when that is ``other``) the
catalogue's ``card_licenses`` maps; then the catalogue's ``model_families`` patterns; then its
``hub_models`` lists. Where the card and the catalogue disagree, the card wins and the result
says so. A model none of them knows is one clear error that says how to declare it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import JcurateError
from licenses.catalogue import Catalogue, License


class UnknownModelLicense(JcurateError):
    """No card, family rule or hub_models entry names the model's terms; ``looked_in`` says where it looked."""

    def __init__(self, model: str, looked_in: str, advice: str):
        super().__init__(f"model {model!r}: no license found: {looked_in}. {advice}")
        self.model, self.looked_in = model, looked_in


@dataclass(frozen=True)
class ModelCard:
    path: str
    license: str | None  # as ``declared_license`` reads it
    license_name: str | None
    license_link: str | None


@dataclass(frozen=True)
class ModelLicense:
    model: str
    license: License
    source: str  # "license id" | "model card <path>" | "family rule <pattern>" | "catalogue hub_models"
    note: str | None = None  # a disagreement between the card and the catalogue


def card_metadata(path: Path) -> dict | None:
    """The YAML front matter of a Hugging Face card (model or dataset ``README.md``); None without one."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    import yaml

    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError):
        return None
    return meta if isinstance(meta, dict) else None


def declared_license(meta: dict) -> str | None:
    """What a card's front matter declares: ``license``, or ``license_name`` when that is ``other``
    (custom terms such as Gemma's); several listed licenses joined with commas."""
    value = meta.get("license")
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else ", ".join(map(str, value))
    if value in (None, ""):
        return None
    if str(value).lower() == "other" and meta.get("license_name"):
        return str(meta["license_name"])
    return str(value)


def read_card(model: str, cache_dir: str | Path | None = None, revision: str | None = None) -> ModelCard | None:
    """The license keys of the model's card: a local folder's README.md, else the cached one."""
    path = Path(model) / "README.md"
    if not path.is_file():
        if Path(model).exists() or model.count("/") != 1:
            return None
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "README.md", cache_dir=cache_dir, revision=revision)
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    meta = card_metadata(path)
    if meta is None:
        return None
    get = lambda k: str(meta[k]) if meta.get(k) not in (None, "") else None  # noqa: E731
    return ModelCard(str(path), declared_license(meta), get("license_name"), get("license_link"))


def resolve_model_license(model: str, catalogue: Catalogue, cache_dir: str | Path | None = None,
                          revision: str | None = None) -> ModelLicense:
    if model in catalogue.licenses:
        return ModelLicense(model, catalogue.licenses[model], "license id")
    rule = catalogue.family_rule(model)
    by_catalogue = (rule[1], f"family rule {rule[0]!r}") if rule else (catalogue.hub_models.get(model),
                                                                       "catalogue hub_models")
    card = read_card(model, cache_dir, revision)
    if card and card.license:
        named = card.license
        license_id = catalogue.card_licenses.get(named.lower())
        if license_id is None:
            raise JcurateError(
                f"model {model!r}: its card ({card.path}) says license {named!r}"
                + (f" ({card.license_link})" if card.license_link else "")
                + ", which licenses/catalogue.yaml does not know: add the terms as a license and map "
                  f"'{named.lower()}' under card_licenses")
        note = None
        if by_catalogue[0] and by_catalogue[0] != license_id:
            note = (f"the model card says {license_id}, the catalogue's {by_catalogue[1]} says {by_catalogue[0]}: "
                    f"the card wins; fix the catalogue if the card is right")
        return ModelLicense(model, catalogue.licenses[license_id], f"model card {card.path}", note)
    if by_catalogue[0]:
        return ModelLicense(model, catalogue.licenses[by_catalogue[0]], by_catalogue[1])
    # a license id in another case (`apache-2.0`, the hub's spelling), as the manifest reads one; not a hub id
    # (no owner/) and not a local folder, which were looked up above
    same_id = [i for i in catalogue.licenses if i.lower() == model.lower()]
    if "/" not in model and not Path(model).exists() and len(same_id) == 1:
        return ModelLicense(model, catalogue.licenses[same_id[0]], f"license id {same_id[0]}")
    raise UnknownModelLicense(
        model, "no model card with a license (a local folder's README.md or the card in the Hugging Face cache), no "
               "model_families pattern and no hub_models entry in licenses/catalogue.yaml",
        "Pass its license id instead (e.g. --base-model Apache-2.0), or add it under hub_models of its license")
