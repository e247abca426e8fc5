"""The license catalogue (``licenses/catalogue.yaml``), validated on load."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
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
    card_licenses: dict[str, str] = field(default_factory=dict)  # model card license id -> license id
    model_families: tuple[tuple[str, str], ...] = ()  # (hub id pattern, license id), first match wins

    def get(self, license_id: str) -> License:
        return self.licenses[license_id]

    def __contains__(self, license_id: str) -> bool:
        return license_id in self.licenses

    def license_id(self, spelling: str) -> str | None:
        """The catalogue id a manifest's spelling names: the id, the id in another case, or a hub spelling
        that ``card_licenses`` maps (``cc-by-4.0``, ``apache-2.0``); None where it names none, or more than one.

        >>> cat = load_catalogue()
        >>> cat.license_id("CC-BY-4.0"), cat.license_id("cc-by-4.0"), cat.license_id("openai-tou"), cat.license_id("odc-by")
        ('CC-BY-4.0', 'CC-BY-4.0', 'OpenAI-ToU', 'ODC-BY-1.0')
        >>> cat.license_id("CC-BY-9.9") is None
        True
        """
        if spelling in self.licenses:
            return spelling
        low = str(spelling).lower()
        found = {i for i in self.licenses if i.lower() == low}
        if low in self.card_licenses:
            found.add(self.card_licenses[low])
        return found.pop() if len(found) == 1 else None

    def closest_id(self, spelling: str) -> str | None:
        """The catalogue id closest to a spelling it does not know (``CC-BY-4`` -> ``CC-BY-4.0``), if any is close."""
        import difflib

        names = {i.lower(): i for i in self.licenses} | dict(self.card_licenses)
        close = difflib.get_close_matches(str(spelling).lower(), list(names), n=1, cutoff=0.6)
        return names[close[0]] if close else None

    def resolve_model(self, model_or_license: str) -> License | None:
        """A license id, or a hub model id by the catalogue alone: the first family rule it matches,
        else the hub_models lists (``licenses.models.resolve_model_license`` reads model cards first)."""
        if model_or_license in self.licenses:
            return self.licenses[model_or_license]
        rule = self.family_rule(model_or_license)
        license_id = rule[1] if rule else self.hub_models.get(model_or_license)
        return self.licenses[license_id] if license_id else None

    def family_rule(self, model: str) -> tuple[str, str] | None:
        """(pattern, license id) of the first ``model_families`` rule ``model`` matches."""
        from fnmatch import fnmatchcase

        return next(((p, lic) for p, lic in self.model_families if fnmatchcase(model, p)), None)


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
    card_licenses = {str(k).lower(): v for k, v in ((data or {}).get("card_licenses") or {}).items()}
    families = []
    for i, rule in enumerate((data or {}).get("model_families") or []):
        if not isinstance(rule, dict) or set(rule) != {"pattern", "license"}:
            raise JcurateError(f"{path}: model_families[{i}]: expected {{pattern: ..., license: ...}}, got {rule!r}")
        families.append((str(rule["pattern"]), rule["license"]))
    for where, license_id in [*((f"card_licenses.{k}", v) for k, v in card_licenses.items()),
                              *((f"model_families pattern {p!r}", v) for p, v in families)]:
        if license_id not in licenses:
            raise JcurateError(f"{path}: {where}: {license_id!r} is not a license id of the catalogue")
    return Catalogue(licenses, hub_models, card_licenses, tuple(families))


def sync_licenses(con, catalogue: Catalogue) -> None:
    """Write the catalogue into the store's ``licenses`` table, replacing each license's row (its ids are
    distinct: one delete and one insert, not a replace per row). Meant for inside a transaction (the ingest's)."""
    rows = []
    for lic in catalogue.licenses.values():
        d = asdict(lic)
        d["license_id"] = d.pop("id")
        d["hub_models"] = list(d["hub_models"])
        rows.append(d)
    con.execute("DELETE FROM licenses WHERE license_id IN (SELECT unnest($ids))", {"ids": list(catalogue.licenses)})
    insert_rows(con, "licenses", rows)
