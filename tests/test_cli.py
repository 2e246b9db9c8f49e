"""The ``glee`` command as users run it (``python -m glee`` in a subprocess): a mistake in a path, a file
or a flag ends with one ``error:`` line and a non-zero status, never a traceback, and the checks that
guard expensive work (a model load, a training run) come before it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "glee" / "weights" / "glee-demo" / "config.json"
POLYGON = [[0, 0, 2, 0, 2, 2, 0, 2]]
COCO_BOXES_ONLY = {
    "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
    "annotations": [{"id": 7, "image_id": 1, "bbox": [0, 0, 2, 2], "category_id": 1}],
    "categories": [{"id": 1, "name": "circle"}],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    (root / "list.json").write_text("[1, 2]")
    (root / "empty.json").write_text("")
    (root / "boxes.json").write_text(json.dumps(COCO_BOXES_ONLY))
    (root / "bad_config.json").write_text(json.dumps({"max_steps": 1, "lr": -1}))
    (root / "config.json").write_text(json.dumps({"max_steps": 1, "max_minutes": 0}))
    (root / "bad_override.json").write_text(
        json.dumps({"max_steps": 1, "model_overrides": {"hidden_dim": "abc"}})
    )
    (root / "no_budget.json").write_text(json.dumps({"max_steps": 0, "max_minutes": 0}))
    (root / "empty.pt").write_bytes(b"")
    (root / "run").mkdir()
    (root / "old").mkdir()
    (root / "old" / "annotations.json").write_text("{}")
    (root / "run" / "checkpoint.pt").write_bytes(b"")
    masks = {
        **COCO_BOXES_ONLY,
        "annotations": [{**COCO_BOXES_ONLY["annotations"][0], "segmentation": POLYGON}],
    }
    (root / "masks.json").write_text(json.dumps(masks))
    bogus = {**masks, "annotations": [{**masks["annotations"][0], "segmentation": "bogus"}]}
    (root / "bogus_seg.json").write_text(json.dumps(bogus))
    (root / "no_images").mkdir()
    (root / "no_images" / "annotations.json").write_text(
        json.dumps(dict(images=[], annotations=[], categories=[]))
    )
    (root / "garbage.safetensors").write_bytes(b"\xff" * 64)
    for name, config, weights in (
        ("not_json", "nope", b""),
        ("bad_type", json.dumps({"hidden_dim": "abc"}), b""),
        ("corrupt", DEMO_CONFIG.read_text(), b"\xff" * 64),
    ):
        (root / name).mkdir()
        (root / name / "config.json").write_text(config)
        (root / name / "model.safetensors").write_bytes(weights)
    return root


CASES = {
    "a dataset that is a list": (["eval", "list.json", "--images", "."], 1, "list.json is not a COCO or"),
    "an empty dataset file": (["eval", "empty.json", "--images", "."], 1, "not valid JSON"),
    "annotations without masks": (
        ["train", "config.json", "--data", "boxes.json", "--out", "fresh"],
        1,
        "annotation 7 has no 'segmentation'",
    ),
    "an invalid config": (
        ["train", "bad_config.json", "--data", "boxes.json", "--out", "fresh"],
        1,
        "invalid TrainConfig: lr: Input should be greater than 0",
    ),
    "a config without a budget": (
        ["train", "no_budget.json", "--data", "boxes.json", "--out", "fresh"],
        1,
        "error: invalid TrainConfig: max_minutes and max_steps are both 0 (no limit)",
    ),
    "a missing config": (
        ["train", "missing.json", "--data", "boxes.json", "--out", "fresh"],
        1,
        "No such file or directory: missing.json",
    ),
    "a new run into an old one": (
        ["train", "config.json", "--data", "boxes.json", "--out", "run"],
        2,
        "already holds a run",
    ),
    "a negative step budget": (
        ["train", "config.json", "--data", "boxes.json", "--out", "fresh", "--max-steps", "-1"],
        2,
        "--max-steps",
    ),
    "an export path that is a file": (
        ["train", "config.json", "--data", "boxes.json", "--out", "fresh", "--export", "list.json"],
        2,
        "the export is a directory",
    ),
    "an empty training checkpoint": (
        ["train-export", "empty.pt", "out"],
        1,
        "is not a glee training checkpoint",
    ),
    "an empty official checkpoint": (["convert", "empty.pt", "out"], 1, "the file is empty"),
    "an unknown eval task": (
        ["eval", "boxes.json", "--images", ".", "--tasks", "detect,bogus"],
        2,
        "'bogus'",
    ),
    "an eval output that is a directory": (
        ["eval", "boxes.json", "--images", ".", "--out", "."],
        2,
        "directory",
    ),
    "a synth into an existing dataset": (
        ["data", "synth", "images", "old", "-n", "1", "-w", "1", "-q"],
        1,
        "old already holds a dataset (annotations.json); choose another directory or pass --overwrite",
    ),
    "a crossing probability that is NaN": (
        ["data", "synth", "videos", "fresh", "--crossing", "nan"],
        2,
        "must be a probability in [0, 1], not nan",
    ),
    "a score threshold that is NaN": (
        ["eval", "boxes.json", "--images", ".", "--score-threshold", "nan"],
        2,
        "'--score-threshold': must be a probability in [0, 1]",
    ),
    "API keys that are only commas": (["serve", "--api-keys", ",,"], 2, "lists nothing but commas"),
    "a model path without weights": (["serve", "--model", "nope"], 1, "no converted GLEE weights at nope"),
    "a device this machine lacks": (["serve", "--device", "cuda:7"], 1, "device 'cuda:7' is not usable here"),
    "an eval task list that names nothing": (
        ["eval", "boxes.json", "--images", ".", "--tasks", ","],
        2,
        "names no task",
    ),
    "a fetch into a path that cannot be a directory": (
        ["weights", "fetch", "lite-joint", "--dest", "list.json/w", "--no-progress"],
        1,
        "fetch failed: Not a directory: list.json/w",
    ),
    "a safetensors file of garbage": (
        ["convert", "garbage.safetensors", "out"],
        1,
        "conversion failed: cannot read garbage.safetensors as a safetensors file: Error while deserializing",
    ),
    "an annotation with a malformed mask": (
        ["eval", "bogus_seg.json", "--images", ".", "--tasks", "detect"],
        1,
        "error: bogus_seg.json: annotation 7 has 'segmentation' \"bogus\", which is not polygons or an RLE",
    ),
    "training data with a malformed mask": (
        ["train", "config.json", "--data", "bogus_seg.json", "--out", "fresh"],
        1,
        "error: bogus_seg.json: annotation 7 has 'segmentation' \"bogus\"",
    ),
    "a training config whose model override has a wrong type": (
        ["train", "bad_override.json", "--data", "boxes.json", "--out", "fresh"],
        1,
        'GleeConfig.hidden_dim must be int, not "abc"',
    ),
    "training data without images": (
        ["train", "config.json", "--data", "no_images", "--out", "fresh"],
        1,
        "error: no_images/annotations.json has no images: nothing to train on",
    ),
}

# Damaged model directories (made in ``workdir``): ``glee eval --model`` and ``glee serve --model`` (which
# checks before it binds its ports) name the file and the problem.
DAMAGED_MODELS = {
    "not_json": "error: not_json/config.json is not a converted GLEE config: not valid JSON",
    "bad_type": 'error: bad_type/config.json: GleeConfig.hidden_dim must be int, not "abc"',
    "corrupt": "error: cannot read corrupt/model.safetensors as a safetensors file",
}
for _model, _reason in DAMAGED_MODELS.items():
    CASES[f"eval of the damaged model {_model}"] = (
        ["eval", "masks.json", "--images", ".", "--model", _model],
        1,
        _reason,
    )
    CASES[f"serve of the damaged model {_model}"] = (["serve", "--model", _model], 1, _reason)


@pytest.mark.parametrize("case", CASES)
def test_a_users_mistake_is_one_error_line_and_no_traceback(workdir: Path, case: str) -> None:
    args, status, reason = CASES[case]
    done = subprocess.run(
        [sys.executable, "-m", "glee", *args], cwd=workdir, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr and reason in done.stderr, done.stderr
    assert not (workdir / "fresh" / "checkpoint.pt").exists()
    assert "HTTP on" not in done.stderr  # a server that cannot load its model never binds its ports
