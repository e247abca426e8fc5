"""The license catalogue (``licenses/catalogue.yaml``), validated on load."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

from core.config import load_yaml
from core.errors import JcurateError
from store.rows import insert_rows

CATALOGUE_PATH = Path(__file__).with_name("catalogue.yaml")

USE_LEVELS = ("commercial", "non-commercial", "academic-only", "unspecified")
KINDS = ("data", "software", "model-terms", "unknown")


@dataclass(frozen=True)
class License:
    id: str
    name: str
    url: str
    kind: str
    use: str
    attribution: bool
    share_alike: bool
    no_derivatives: bool
    notice_required: bool
    restricts_training_other_models: bool
    derivative_terms: bool
    notes: str = ""
    attribution_template: str | None = None
    hub_models: tuple[str, ...] = ()


_REQUIRED = [f.name for f in fields(License) if f.name not in ("notes", "attribution_template", "hub_models")]


def _parse_entry(i: int, entry: dict, path: Path) -> License:
    where = f"{path}: licenses[{i}]"
    if not isinstance(entry, dict):
        raise JcurateError(f"{where}: expected a mapping")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise JcurateError(f"{where} ({entry.get('id', '?')}): missing key(s) {', '.join(missing)}")
    known = {f.name for f in fields(License)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise JcurateError(f"{where} ({entry['id']}): unknown key(s) {', '.join(unknown)}")
    if entry["use"] not in USE_LEVELS:
        raise JcurateError(f"{where} ({entry['id']}): use must be one of {USE_LEVELS}, got {entry['use']!r}")
    if entry["kind"] not in KINDS:
        raise JcurateError(f"{where} ({entry['id']}): kind must be one of {KINDS}, got {entry['kind']!r}")
    for key in ("attribution", "share_alike", "no_derivatives", "notice_required",
                "restricts_training_other_models", "derivative_terms"):
        if not isinstance(entry[key], bool):
            raise JcurateError(f"{where} ({entry['id']}): {key} must be true or false, got {entry[key]!r}")
    return License(**{**entry, "hub_models": tuple(entry.get("hub_models") or ())})


@dataclass(frozen=True)
class Catalogue:
    licenses: dict[str, License]
    hub_models: dict[str, str]  # hub model id -> license id

    def get(self, license_id: str) -> License:
        return self.licenses[license_id]

    def __contains__(self, license_id: str) -> bool:
        return license_id in self.licenses

    def resolve_model(self, model_or_license: str) -> License | None:
        """A hub model id mapped in the catalogue, or a license id."""
        if model_or_license in self.licenses:
            return self.licenses[model_or_license]
        license_id = self.hub_models.get(model_or_license)
        return self.licenses[license_id] if license_id else None


@lru_cache(maxsize=4)
def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    data = load_yaml(path, "license catalogue")
    entries = [_parse_entry(i, e, Path(path)) for i, e in enumerate((data or {}).get("licenses") or [])]
    licenses: dict[str, License] = {}
    hub_models: dict[str, str] = {}
    for lic in entries:
        if lic.id in licenses:
            raise JcurateError(f"{path}: license id {lic.id!r} appears twice")
        licenses[lic.id] = lic
        for model in lic.hub_models:
            if model in hub_models:
                raise JcurateError(f"{path}: hub model {model!r} is mapped to {hub_models[model]} and {lic.id}")
            hub_models[model] = lic.id
    return Catalogue(licenses, hub_models)


def sync_licenses(con, catalogue: Catalogue) -> None:
    """Write the catalogue into the store's ``licenses`` table (replacing each license's row)."""
    rows = []
    for lic in catalogue.licenses.values():
        d = asdict(lic)
        d["license_id"] = d.pop("id")
        d["hub_models"] = list(d["hub_models"])
        rows.append(d)
    insert_rows(con, "licenses", rows, replace=True)
