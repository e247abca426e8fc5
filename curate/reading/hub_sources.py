"""Manifest sources named by Hugging Face hub id (``hub: owner/name``) instead of ``path``.

The dataset is resolved through ``huggingface_hub`` into its local snapshot (the HF cache; with
``HF_HUB_OFFLINE`` set, which ``jcurate`` does unless told otherwise, nothing is downloaded and a
dataset not in the cache is one clear error). The snapshot's folder name is the commit sha, which
the store records as the source's ``hub_revision``, so provenance names the exact revision. The
files read are ``data_files`` (glob patterns relative to the repository root) or every file of
the source's format, narrowed to ``config`` (a top-level folder, the hub's layout for several
configurations) and ``split`` (file names containing it, as in ``data/train-00000-of-00001.parquet``).
The dataset card's ``license:`` is read too: it is the source's license when the manifest gives
none, and a run whose manifest and card disagree stops before any work, naming both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from core.errors import JcurateError
from licenses.catalogue import Catalogue

EXTENSIONS = {"jsonl": (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2"), "json": (".json",),
              "parquet": (".parquet",), "csv": (".csv", ".csv.gz")}


@dataclass(frozen=True)
class HubDataset:
    repo_id: str
    revision: str  # the resolved commit sha
    folder: Path  # its local snapshot
    files: tuple[str, ...]
    card_license: str | None  # a catalogue id, from the dataset card
    card_license_raw: str | None  # what the card says


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve_hub_dataset(repo_id: str, fmt: str, catalogue: Catalogue, revision: str | None = None,
                        config: str | None = None, split: str | None = None, data_files=None,
                        where: str = "") -> HubDataset:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, local_files_only=offline()))
    except LocalEntryNotFoundError:
        raise JcurateError(f"{where}: hub dataset {repo_id}{'@' + revision if revision else ''} is not in the "
                           f"Hugging Face cache and HF_HUB_OFFLINE is set: download it first "
                           f"(`huggingface-cli download --repo-type dataset {repo_id}`) or run with "
                           f"HF_HUB_OFFLINE=0") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise JcurateError(f"{where}: hub dataset {repo_id}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    patterns = [data_files] if isinstance(data_files, str) else list(data_files or [])
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if patterns:
            if not any(fnmatch(rel, pat) for pat in patterns):
                continue
        elif not rel.endswith(EXTENSIONS.get(fmt, ())):
            continue
        if config and not rel.startswith(f"{config}/"):
            continue
        if split and split not in path.name:
            continue
        files.append(str(path))
    if not files:
        raise JcurateError(f"{where}: hub dataset {repo_id} has no {fmt} file"
                           + (f" matching data_files {patterns}" if patterns else "")
                           + (f" under config '{config}'" if config else "") + (f" for split '{split}'" if split else ""))
    raw, card_license = _card_license(folder, catalogue)
    return HubDataset(repo_id, folder.name, folder, tuple(files), card_license, raw)


def _card_license(folder: Path, catalogue: Catalogue) -> tuple[str | None, str | None]:
    from licenses.models import card_metadata, declared_license

    card = folder / "README.md"
    meta = card_metadata(card) if card.is_file() else None
    raw = declared_license(meta) if meta else None
    return (raw, catalogue.card_licenses.get(raw.lower())) if raw else (None, None)
