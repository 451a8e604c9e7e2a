"""Model package manifests: every file's SHA-256 is written at save/export and checked before
any file is parsed; a booster that crashes LightGBM is parsed in a child process only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.manifest import (
    MANIFEST_FILE,
    ManifestError,
    probe_booster,
    verify_manifest,
    write_manifest,
)
from training.model import BOOSTER_FILE, CreditModel, ModelFileError


@pytest.fixture()
def package(trained_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_model_dir, tmp_path / "pkg"))


def test_save_writes_a_manifest_that_verifies(package: Path) -> None:
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {"booster.txt", "model.json", "catalog.yaml"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    verify_manifest(package, required=(BOOSTER_FILE,))
    assert CreditModel.load(package, isolated=True).feature_names


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("truncate", "truncated or changed"),
        ("flip", "SHA-256"),
        ("extra", "does not list"),
        ("no_manifest", "no manifest.json"),
        ("bad_manifest", "not a valid manifest"),
    ],
)
def test_a_changed_package_is_refused_before_parsing(
    package: Path, change: str, words: str
) -> None:
    booster = package / BOOSTER_FILE
    if change == "truncate":
        with booster.open("r+b") as fh:
            fh.truncate(100_000)
    elif change == "flip":
        data = bytearray(booster.read_bytes())
        data[500] ^= 1
        booster.write_bytes(bytes(data))
    elif change == "extra":
        (package / "notes.txt").write_text("hello")
    elif change == "no_manifest":
        (package / MANIFEST_FILE).unlink()
    else:
        (package / MANIFEST_FILE).write_text("{")
    with pytest.raises(ModelFileError, match=words):
        CreditModel.load(package)


def test_a_parser_crash_stays_in_the_child(package: Path) -> None:
    booster = package / BOOSTER_FILE
    with booster.open("r+b") as fh:
        fh.truncate(min(100_000, booster.stat().st_size * 4 // 5))
    write_manifest(package)  # the manifest now matches the broken file
    with pytest.raises(ManifestError, match=r"crashed the parser|not a usable LightGBM model"):
        probe_booster(booster)
    with pytest.raises(ModelFileError):
        CreditModel.load(package, isolated=True)


def test_a_parser_error_quoting_bytes_that_are_not_utf8_is_still_a_manifest_error(
    tmp_path: Path,
) -> None:
    # LightGBM's "expect a tree here. met ..." quotes the file's bytes; a truncation that cut
    # a multi-byte character (as one CI run did) once surfaced as UnicodeDecodeError.
    import lightgbm as lgb
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((500, 5))
    data = lgb.Dataset(x, (x[:, 0] > 0.5).astype(int))
    good = tmp_path / "good.txt"
    lgb.train({"objective": "binary", "verbose": -1, "seed": 0}, data, 20).save_model(good)
    raw = good.read_bytes()
    cut = raw.index(b"Tree=3\n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(raw[:cut] + b"\xdd\xfe\xdd not a tree\n" + raw[cut : cut + 50])
    with pytest.raises(ManifestError, match=r"crashed the parser|not a usable LightGBM model"):
        probe_booster(bad)


def test_probe_counts_features_of_a_good_booster(trained_model_dir: Path) -> None:
    n = probe_booster(trained_model_dir / BOOSTER_FILE)
    assert n == len(CreditModel.load(trained_model_dir).feature_names)
