"""The sources manifest (``data/sources.yaml``): the contract of DESIGN.md, validated on load.

Everything is checked before any record is read: unique ids, known formats, existing paths,
field mappings, and license ids present in the license catalogue.
"""

from __future__ import annotations

import codecs
import glob
from dataclasses import dataclass, field
from pathlib import Path

from core.config import load_yaml
from core.errors import JcurateError
from licenses.catalogue import Catalogue, load_catalogue

FORMATS = ("jsonl", "json", "parquet", "csv", "hf-disk")
SINGLE_TURN_FIELDS = ("instruction", "input", "output")
ROLE_FIELDS_NOTE = "turns are {role, content} with role system/user/assistant, or ShareGPT {from, value}"
KNOWN_KEYS = {
    "id", "name", "path", "format", "license", "url", "fields", "id_field", "generated_by",
    "attribution", "label_field", "notes", "synthetic_variations", "encoding",
    "hub", "revision", "config", "split", "data_files",  # a Hugging Face hub dataset instead of path
}
HUB_KEYS = ("revision", "config", "split", "data_files")


@dataclass(frozen=True)
class GeneratedBy:
    model: str
    license: str


@dataclass(frozen=True)
class Source:
    id: str
    path: str  # as written in the manifest
    files: tuple[str, ...]  # resolved, sorted
    format: str
    license: str
    fields: dict = field(default_factory=dict)
    url: str | None = None
    name: str | None = None
    id_field: str | None = None
    generated_by: GeneratedBy | None = None
    attribution: str | None = None
    label_field: str | None = None  # a column of quality labels the source ships
    order: int = 0  # position in the manifest: earlier sources win dedup ties
    encoding: str | None = None  # jsonl/json/csv text encoding (cp932, shift_jis, utf-8-sig); None: UTF-8, BOM or not
    hub_id: str | None = None  # a hub dataset: its id and the commit sha it resolved to
    hub_revision: str | None = None
    license_from_card: bool = False  # the manifest named no license: the dataset card's is used

    @property
    def multi_turn(self) -> bool:
        return "messages" in self.fields


COMPRESSED = (".gz", ".bz2", ".zst")  # read decompressed (curate.reading.readers.open_binary): data.jsonl.gz is JSON Lines


def _resolve_files(path: str, fmt: str, base: Path) -> tuple[str, ...]:
    """Relative paths are tried against the manifest's folder, then the current directory."""
    candidates = [Path(path)] if Path(path).is_absolute() else [base / path, Path(path)]
    for cand in candidates:
        if fmt == "hf-disk":
            if cand.is_dir():
                return (str(cand),)
            continue
        if cand.is_file():
            return (str(cand),)
        if cand.is_dir():
            suffix = {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet", "csv": ".csv"}[fmt]
            # the format's own extension only (compressed or not): not data.jsonl.bak, not .jsonl for json
            endings = (suffix,) if fmt == "parquet" else (suffix, *(suffix + c for c in COMPRESSED))
            files = sorted({str(p) for e in endings for p in cand.rglob(f"*{e}") if p.is_file()})
            if files:
                return tuple(files)
        matches = sorted(glob.glob(str(cand)))
        if matches:
            return tuple(matches)
    return ()


def _license_id(value, catalogue: Catalogue, where: str) -> str:
    """The catalogue id a manifest's license value names (``cc-by-4.0`` and ``Apache-2.0`` alike), or one line
    that names the key and the closest id."""
    license_id = catalogue.license_id(str(value))
    if license_id is None:
        close = catalogue.closest_id(str(value))
        raise JcurateError(f"{where}: {value!r} is not in the license catalogue ("
                           + (f"did you mean {close}? " if close else "")
                           + "see `jcurate licenses list`; add it to licenses/catalogue.yaml)")
    return license_id


def _generated_by(gb, catalogue: Catalogue, where: str) -> GeneratedBy:
    """A source's ``generated_by``: the model, and its terms as declared or as its card or the catalogue say."""
    from licenses.models import UnknownModelLicense, resolve_model_license

    if not isinstance(gb, dict) or "model" not in gb:
        raise JcurateError(f"{where}: key 'generated_by' needs 'model' (and 'license' where the model's card and "
                           f"the catalogue do not say it)")
    model = str(gb["model"])
    if "license" in gb:
        return GeneratedBy(model, _license_id(gb["license"], catalogue, f"{where}: key 'generated_by.license'"))
    try:
        return GeneratedBy(model, resolve_model_license(model, catalogue).license.id)
    except UnknownModelLicense as e:
        raise JcurateError(
            f"{where}: key 'generated_by': no license known for model {model!r}: {e.looked_in}. Name its terms in "
            f"the manifest: generated_by: {{model: {model}, license: ID}}, ID a license id of `jcurate licenses list` "
            f"(e.g. Apache-2.0, Llama-3.1, OpenAI-ToU)") from None
    except JcurateError as e:
        raise JcurateError(f"{where}: key 'generated_by': {e}") from None


def _parse_source(i: int, entry, manifest: Path, catalogue: Catalogue) -> Source:
    where = f"{manifest}: sources[{i}]"
    if not isinstance(entry, dict):
        raise JcurateError(f"{where}: expected a mapping, got {entry!r}")
    sid = entry.get("id")
    if not sid or not isinstance(sid, str):
        raise JcurateError(f"{where}: missing key 'id'")
    where = f"{manifest}: source '{sid}'"
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        raise JcurateError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_KEYS))})")
    hub = entry.get("hub")
    if hub is not None and "path" in entry:
        raise JcurateError(f"{where}: 'hub' and 'path' are alternatives: name one")
    stray = [k for k in HUB_KEYS if k in entry] if hub is None else []
    if stray:
        raise JcurateError(f"{where}: key(s) {', '.join(stray)} only apply to a hub dataset ('hub: owner/name')")
    for key in ("format", "fields") + (() if hub else ("path", "license")):
        if key not in entry:
            raise JcurateError(f"{where}: missing key '{key}'")
    fmt = entry["format"]
    if fmt not in FORMATS or (hub and fmt == "hf-disk"):
        raise JcurateError(f"{where}: key 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    declared = _license_id(entry["license"], catalogue, f"{where}: key 'license'") if "license" in entry else None
    dataset = None
    if hub:
        from curate.reading.hub_sources import resolve_hub_dataset

        dataset = resolve_hub_dataset(str(hub), fmt, catalogue, revision=entry.get("revision"),
                                      config=entry.get("config"), split=entry.get("split"),
                                      data_files=entry.get("data_files"), where=where)
        if "license" not in entry:
            if dataset.card_license is None:
                raise JcurateError(f"{where}: no 'license' key and the dataset card of {hub} "
                                   + (f"says {dataset.card_license_raw!r}, which the catalogue does not map"
                                      if dataset.card_license_raw else "names no license") + ": declare it")
        elif dataset.card_license and dataset.card_license != declared:
            raise JcurateError(f"{where}: the manifest says license {entry['license']!r}, the dataset card of {hub} "
                               f"says {dataset.card_license_raw!r} ({dataset.card_license}): resolve which is right")
    license_id = declared or dataset.card_license
    fields_ = entry["fields"]
    if not isinstance(fields_, dict) or not fields_:
        raise JcurateError(f"{where}: key 'fields' must map record fields to source columns")
    allowed = set(SINGLE_TURN_FIELDS) | {"messages"}
    bad = sorted(set(fields_) - allowed)
    if bad:
        raise JcurateError(
            f"{where}: key 'fields' maps unknown record field(s) {', '.join(bad)} "
            f"(record fields: instruction, input, output, or messages)"
        )
    if "messages" in fields_ and len(fields_) > 1:
        raise JcurateError(f"{where}: key 'fields': 'messages' cannot be combined with single-turn fields")
    if "messages" not in fields_ and not {"instruction", "output"} <= set(fields_):
        raise JcurateError(f"{where}: key 'fields' must map at least 'instruction' and 'output' (or 'messages')")
    generated_by = _generated_by(entry["generated_by"], catalogue, where) if "generated_by" in entry else None
    files = dataset.files if dataset else _resolve_files(str(entry["path"]), fmt, manifest.parent)
    if not files:
        raise JcurateError(f"{where}: key 'path': no {fmt} file found at {entry['path']}")
    encoding = entry.get("encoding")
    if encoding is not None:
        try:
            encoding = codecs.lookup(str(encoding)).name
        except LookupError:
            raise JcurateError(f"{where}: key 'encoding': unknown encoding {entry['encoding']!r} "
                               f"(e.g. utf-8, utf-8-sig, cp932, shift_jis, euc_jp)") from None
    return Source(
        id=sid, path=f"hf://datasets/{hub}@{dataset.revision}" if dataset else str(entry["path"]), files=files,
        format=fmt, license=license_id, fields=dict(fields_),
        url=entry.get("url") or (f"https://huggingface.co/datasets/{hub}" if hub else None), name=entry.get("name"),
        id_field=entry.get("id_field"), generated_by=generated_by, attribution=entry.get("attribution"),
        label_field=entry.get("label_field"), order=i, encoding=encoding, hub_id=str(hub) if hub else None,
        hub_revision=dataset.revision if dataset else None, license_from_card=bool(hub) and "license" not in entry,
    )


def load_manifest(path: str | Path, catalogue: Catalogue | None = None) -> list[Source]:
    path = Path(path)
    data = load_yaml(path, "sources manifest")
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list) or not data["sources"]:
        raise JcurateError(f"{path}: expected a top-level 'sources:' list with at least one source")
    catalogue = catalogue or load_catalogue()
    sources = [_parse_source(i, e, path, catalogue) for i, e in enumerate(data["sources"])]
    seen: set[str] = set()
    for s in sources:
        if s.id in seen:
            raise JcurateError(f"{path}: source id '{s.id}' appears twice")
        if ":" in s.id:
            raise JcurateError(f"{path}: source id '{s.id}' must not contain ':' (it prefixes record ids)")
        seen.add(s.id)
    return sources
