"""The model configuration is checked by pydantic on load: a typo fails naming the key."""

from pathlib import Path

import pytest
import yaml

from training.scale import CONFIG_PATH, load_config


def _write(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_shipped_configuration_loads_with_defaults_among_the_candidates():
    cfg = load_config()
    assert cfg["table"]["candidates"]["defaults"]["rounds"] == 100
    assert 0.0 in cfg["table"]["blend_weights"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["table"].update(folds_typo=5), "table.folds_typo"),
        (lambda c: c["table"]["candidates"].pop("defaults"), "must include 'defaults'"),
        (lambda c: c["search"].update(learning_rate=[0.3, 0.1]), "search.learning_rate"),
        (lambda c: c["gate"].update(min_auc="high"), "gate.min_auc"),
        (lambda c: c["table"].update(blend_weights=[0.2, 1.5]), "blend_weights"),
    ],
)
def test_invalid_configuration_is_refused_naming_the_key(tmp_path, edit, message):
    with pytest.raises(ValueError, match="not a valid model configuration") as err:
        load_config(_write(tmp_path, edit))
    assert message in str(err.value)
