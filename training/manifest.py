"""Model package manifests and an isolated booster check.

A model package (the folder :meth:`training.model.CreditModel.save` writes, and the one
``kuaxin export`` copies out of the registry) carries ``manifest.json``: the SHA-256 and size
of every other file in it. :func:`verify_manifest` checks them before any file is parsed, so a
truncated or swapped file is refused with its name instead of reaching LightGBM's parser.

LightGBM's text parser can still crash the whole process (a segmentation fault, or
``terminate called``) on a file whose manifest was rewritten to match it. :func:`probe_booster`
therefore loads the booster and predicts one row in a child process first: a crash there is a
refused load, not a dead service.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The manifest's file name inside a model package.
MANIFEST_FILE = "manifest.json"
#: Version of the manifest format.
MANIFEST_FORMAT = 1
#: Seconds the booster probe may take before it counts as hung.
PROBE_TIMEOUT_S = 120.0

# Run in a fresh interpreter: imports only LightGBM and NumPy, so it needs no project path.
_PROBE = """
import sys
import lightgbm as lgb
import numpy as np
booster = lgb.Booster(model_file=sys.argv[1])
n = booster.num_feature()
booster.predict(np.full((1, n), np.nan), raw_score=True, num_threads=1)
booster.predict(np.full((1, n), np.nan), pred_contrib=True, num_threads=1)
print(n)
"""


class ManifestError(ValueError):
    """A package's files do not match its manifest, or a file cannot be parsed safely."""


def sha256_of(path: Path) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _package_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST_FILE
    )


def write_manifest(folder: Path | str) -> Path:
    """Write ``manifest.json`` listing every other file of ``folder`` with its SHA-256 and size.

    Parameters
    ----------
    folder : Path or str
        A model package folder.

    Returns
    -------
    Path
        The manifest file.
    """
    root = Path(folder)
    files = {
        p.relative_to(root).as_posix(): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
        for p in _package_files(root)
    }
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    path = root / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return path


def verify_manifest(folder: Path | str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check every file of a package against its manifest (sizes first, then hashes).

    Parameters
    ----------
    folder : Path or str
        A model package folder.
    required : tuple of str
        Files that must be listed (e.g. ``booster.txt``).

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    ManifestError
        No or unreadable manifest, a required file not listed, a listed file missing, of
        another size or hash, or a file present that the manifest does not list.
    """
    root = Path(folder)
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(
            f"model folder {root} has no {MANIFEST_FILE}; re-export it (kuaxin export) or "
            "re-save it with CreditModel.save"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files must be an object")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not a valid manifest: {exc}") from exc
    for name in required:
        if name not in files:
            raise ManifestError(f"{path} does not list {name}")
    present = {p.relative_to(root).as_posix() for p in _package_files(root)}
    extra = sorted(present - set(files))
    if extra:
        raise ManifestError(f"{root} holds files its manifest does not list: {', '.join(extra)}")
    for name, entry in files.items():
        file = root / name
        if name not in present:
            raise ManifestError(f"{file} is listed in the manifest but missing")
        size = file.stat().st_size
        if size != entry.get("bytes"):
            raise ManifestError(
                f"{file} has {size} bytes; the manifest says {entry.get('bytes')} (truncated or changed)"
            )
        if sha256_of(file) != entry.get("sha256"):
            raise ManifestError(f"{file} does not match its SHA-256 in the manifest")
    return manifest


def probe_booster(booster_file: Path | str, timeout: float = PROBE_TIMEOUT_S) -> int:
    """Load a LightGBM text model and predict one row in a child process.

    Parameters
    ----------
    booster_file : Path or str
        The ``booster.txt`` to check.
    timeout : float
        Seconds before the child counts as hung (and is killed).

    Returns
    -------
    int
        Number of features the booster reads.

    Raises
    ------
    ManifestError
        The child crashed, hung, or LightGBM refused the file.
    """
    file = Path(booster_file)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(file)],
            capture_output=True,
            text=True,
            # LightGBM's parse errors quote the file's bytes, which need not be UTF-8.
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ManifestError(f"{file}: LightGBM did not finish parsing in {timeout:.0f} s") from exc
    if done.returncode != 0:
        if done.returncode < 0:
            why = f"crashed the parser ({signal.Signals(-done.returncode).name})"
        else:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            why = f"is not a usable LightGBM model: {last[:300]}"
        raise ManifestError(f"{file} {why}")
    try:
        return int(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise ManifestError(f"{file}: the booster probe gave no feature count") from exc
