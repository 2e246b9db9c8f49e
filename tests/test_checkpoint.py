"""Official checkpoint canonicalization, loading, conversion and the converted-directory round trip.

The "official" files are generated with the parity-fixture weight rules (tests/parity/official_weights.py)
in the model-zoo layout, so a successful load is checked bit for bit against the fixture's per-tensor sha256.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import typer
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from glee.model import build_glee
from glee.model.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    canonical_key,
    canonicalize_state_dict,
    convert,
    is_dropped,
    load_checkpoint,
    load_pretrained,
    read_pretrained_config,
    save_pretrained,
)
from glee.model.cli import register
from glee.model.config import get_config
from glee.model.weights import sha256_file
from tests.parity.official_weights import (
    CRITERION_KEYS,
    EXPECTED_DIGEST,
    official_zoo_state_dict,
    overall_digest,
    per_key_digests,
    read_key_list,
    tensor_sha256,
)

DATA = Path(__file__).parent / "data"
LITE_TSV = DATA / "glee-lite-statedict-keys.tsv"
STAGE1_TSV = DATA / "glee-lite-stage1-statedict-keys.tsv"
PARITY_SHA256 = json.loads((DATA / "weights_sha256.json").read_text())["per_canonical_key"]
SOT_FUSER = sorted(f"sot_fuser.refine.{i}.{p}" for i in range(3) for p in ("weight", "bias"))


def _zoo_layout(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    model = {f"glee.{k}": v for k, v in state.items()}
    model.update({k: torch.ones(shape) for k, shape in CRITERION_KEYS.items()})
    return {"model": model}


def _stored(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint of ``model`` holds (BatchNorm's ``num_batches_tracked`` is never stored)."""
    return {k: v for k, v in model.state_dict().items() if not is_dropped(k)}


def _assert_parity_weights(model: torch.nn.Module) -> None:
    wrong = [k for k, v in model.state_dict().items() if tensor_sha256(v.numpy()) != PARITY_SHA256[k]]
    assert not wrong, f"{len(wrong)} tensors differ from the parity weights, e.g. {wrong[:5]}"


# --- canonicalization (no model needed) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        ("glee.predictor.bbox_embed.3.layers.2.weight", "predictor._bbox_embed.layers.2.weight"),
        ("predictor.decoder.bbox_embed.8.layers.0.bias", "predictor._bbox_embed.layers.0.bias"),
        ("glee.predictor._bbox_embed.layers.1.weight", "predictor._bbox_embed.layers.1.weight"),
        ("glee.predictor.decoder.norm.weight", "predictor.decoder_norm.weight"),
        ("predictor.decoder.layers.8.norm1.weight", "predictor.decoder.layers.8.norm1.weight"),
        ("glee.backbone.res2.0.conv1.norm.running_var", "backbone.res2.0.conv1.norm.running_var"),
    ],
)
def test_canonical_key(key: str, canonical: str) -> None:
    assert canonical_key(key) == canonical


@pytest.mark.parametrize(
    ("key", "dropped"),
    [
        ("criterion.empty_weight", True),
        ("text_encoder_teacher.text_model.final_layer_norm.weight", True),
        ("predictor.coco_label_enc.weight", True),
        ("predictor.bdd_inst.weight", True),
        ("text_encoder.text_model.embeddings.position_ids", True),
        ("backbone.stem.conv1.norm.num_batches_tracked", True),
        ("text_encoder.text_model.embeddings.position_embedding.weight", False),
        ("pixel_decoder.transformer.level_embed", False),
        ("predictor.category_embed", False),
        ("pn_indicator.weight", False),
    ],
)
def test_training_only_keys_are_dropped(key: str, dropped: bool) -> None:
    assert is_dropped(key) is dropped


@pytest.mark.parametrize(
    "wrap", [lambda sd: sd, lambda sd: {"model": sd, "iteration": 7}, lambda sd: {"state_dict": sd}]
)
def test_canonicalize_unwraps_strips_and_collapses(wrap: Callable[[dict], dict]) -> None:
    box = torch.randn(4, 256)
    sd = {
        "glee.predictor._bbox_embed.layers.2.weight": box,
        "glee.predictor.bbox_embed.0.layers.2.weight": box,
        "glee.predictor.decoder.bbox_embed.8.layers.2.weight": box.clone(),
        "glee.predictor.decoder.norm.bias": torch.zeros(256),
        "glee.lang_projection": torch.ones(512, 256),
        "glee.predictor.vg_label_enc.weight": torch.ones(200, 256),
        "criterion.empty_weight": torch.ones(2),
    }
    clean, dropped = canonicalize_state_dict(wrap(sd))
    assert sorted(clean) == [
        "lang_projection",
        "predictor._bbox_embed.layers.2.weight",
        "predictor.decoder_norm.bias",
    ]
    assert torch.equal(clean["predictor._bbox_embed.layers.2.weight"], box)
    assert sorted(dropped) == ["criterion.empty_weight", "glee.predictor.vg_label_enc.weight"]


def test_alias_only_file_keeps_the_value_under_the_canonical_name() -> None:
    clean, _ = canonicalize_state_dict({"predictor.decoder.norm.weight": torch.full((256,), 2.0)})
    assert list(clean) == ["predictor.decoder_norm.weight"]
    assert clean["predictor.decoder_norm.weight"][0] == 2.0


def test_conflicting_aliases_mean_a_corrupt_file() -> None:
    sd = {"predictor.decoder_norm.weight": torch.ones(256), "predictor.decoder.norm.weight": torch.zeros(256)}
    with pytest.raises(CheckpointError, match="corrupt"):
        canonicalize_state_dict(sd)


def test_non_tensor_entries_are_rejected() -> None:
    with pytest.raises(CheckpointError, match="lang_projection"):
        canonicalize_state_dict({"model": {"lang_projection": [1.0, 2.0]}})


def test_official_key_lists_canonicalize_to_the_inference_keys() -> None:
    """Zoo layout (prefix, wrapper, aliases, teacher, DN) and the Dec-2023 demo layout give the same keys."""
    shapes = read_key_list(LITE_TSV)
    shared: dict[str, torch.Tensor] = {}
    state = {k: shared.setdefault(canonical_key(k), torch.zeros(1)) for k in shapes}
    zoo, dropped = canonicalize_state_dict(_zoo_layout(state))
    assert len(zoo) == 1043 - 196 - 10
    collapsed = {"predictor._bbox_embed.layers.2.weight", "predictor.decoder_norm.bias"}
    assert collapsed <= set(zoo)
    leftovers = ("glee.", "teacher", "label_enc", "bdd_", "criterion", ".bbox_embed.", ".decoder.norm.")
    assert not [k for k in zoo if any(part in k for part in leftovers)]
    assert len(dropped) == 196 + 10 + 1
    bare = {k: v for k, v in state.items() if not k.startswith("text_encoder_teacher.")}
    demo, _ = canonicalize_state_dict(bare)
    assert set(demo) == set(zoo)


def test_parity_generator_reproduces_the_official_digest() -> None:
    """numpy does not promise stable streams across versions: this is the check the README asks for."""
    digests = per_key_digests(LITE_TSV)
    assert digests == PARITY_SHA256
    assert overall_digest(digests) == EXPECTED_DIGEST


# --- loading into real models -------------------------------------------------------------------


@pytest.fixture(scope="session")
def lite_zoo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zoo") / "GLEE_Lite_joint.pth"
    torch.save(official_zoo_state_dict(LITE_TSV), path)
    return path


@pytest.fixture(scope="session")
def stage1_zoo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zoo") / "GLEE_Lite_pretrain.pth"
    torch.save(official_zoo_state_dict(STAGE1_TSV), path)
    return path


def test_official_zoo_file_loads_bit_exact(lite_zoo_file: Path) -> None:
    model = build_glee("lite")
    report = load_checkpoint(model, lite_zoo_file)
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    assert report.loaded == len(model.state_dict())
    assert len(report.dropped) == 196 + 10 + 1
    _assert_parity_weights(model)


def test_convert_round_trip_is_bit_exact(lite_zoo_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "glee-lite"
    report = convert(lite_zoo_file, out, variant="lite", progress=False)
    assert report.ok
    config, metadata = read_pretrained_config(out)
    assert config == get_config("lite")
    assert metadata["format"] == "glee-serve/1"
    assert metadata["dtype"] == "float32"
    assert metadata["source"] == lite_zoo_file.name
    assert metadata["source_sha256"] == sha256_file(lite_zoo_file)
    model = load_pretrained(out)
    assert not model.training
    _assert_parity_weights(model)


def test_stage1_checkpoint_loads_into_the_stage1_model(stage1_zoo_file: Path) -> None:
    model = build_glee("lite_stage1")
    report = load_checkpoint(model, stage1_zoo_file)
    assert report.ok
    assert report.loaded == len(model.state_dict())
    _assert_parity_weights(model)


def test_stage2_extras_are_reported_not_ignored(lite_zoo_file: Path) -> None:
    model = build_glee("lite_stage1")
    with pytest.raises(CheckpointMismatchError, match=r"6 unexpected .*\n  sot_fuser\.refine\.0\.bias"):
        load_checkpoint(model, lite_zoo_file)
    report = load_checkpoint(model, lite_zoo_file, strict=False)
    assert report.unexpected == SOT_FUSER
    assert (report.missing, report.mismatched) == ([], [])
    assert report.loaded == len(model.state_dict())


# --- mismatches, dtype, CLI (small demo model) --------------------------------------------------


@pytest.fixture
def demo_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in _stored(build_glee("demo")).items()}


def _first_matrix(state: dict[str, torch.Tensor]) -> str:
    return next(k for k, v in state.items() if v.ndim == 2)


@pytest.mark.parametrize("problem", ["missing", "shape", "extra"])
def test_mismatch_raises_before_touching_the_model(
    problem: str, demo_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    key = _first_matrix(demo_state)
    if problem == "missing":
        del demo_state[key]
        expected = rf"1 missing from the checkpoint:\n  {re.escape(key)}"
    elif problem == "shape":
        rows, cols = demo_state[key].shape
        demo_state[key] = torch.zeros(rows, cols + 1)
        shapes = re.escape(f"{key}: ({rows}, {cols + 1}) vs ({rows}, {cols})")
        expected = rf"1 shape mismatch \(checkpoint vs model\):\n  {shapes}"
    else:
        demo_state["predictor.extra_head.weight"] = torch.zeros(3)
        expected = r"1 unexpected \(not in the model\):\n  predictor\.extra_head\.weight"
    torch.save(_zoo_layout(demo_state), tmp_path / "bad.pth")
    model = build_glee("demo")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=expected) as info:
        load_checkpoint(model, tmp_path / "bad.pth")
    assert not info.value.report.ok
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_mismatch_message_lists_at_most_twenty_keys(
    demo_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    save_file({k: v for i, (k, v) in enumerate(demo_state.items()) if i >= 25}, tmp_path / "part.safetensors")
    with pytest.raises(
        CheckpointMismatchError, match=r"25 missing.*\n(  .*\n){20}  \.\.\. and 5 more"
    ) as info:
        load_checkpoint(build_glee("demo"), tmp_path / "part.safetensors")
    assert len(info.value.report.missing) == 25


def test_float16_directory_is_cast_to_the_model_dtype(
    demo_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    model = build_glee("demo")
    model.load_state_dict(demo_state)
    save_pretrained(model, tmp_path / "fp16", get_config("demo"), dtype="float16")
    # Readable by all, like config.json (safetensors creates files 0600): a server may run as another user.
    assert {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "fp16").iterdir()} == {
        "model.safetensors": 0o644,
        "config.json": 0o644,
    }
    stored = load_file(tmp_path / "fp16" / "model.safetensors")
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    loaded = load_pretrained(tmp_path / "fp16")
    assert set(stored) == set(demo_state)
    for key, value in _stored(loaded).items():
        assert value.dtype == demo_state[key].dtype
        assert torch.equal(value, demo_state[key].to(stored[key].dtype).to(value.dtype)), key


def test_cli_convert(demo_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    torch.save(_zoo_layout(demo_state), tmp_path / "demo.pth")
    result = runner.invoke(
        app, ["convert", str(tmp_path / "demo.pth"), str(tmp_path / "out"), "--variant", "demo"]
    )
    assert result.exit_code == 0, result.output
    assert f"loaded {len(demo_state)} tensors, dropped 1, missing 0" in result.stdout
    loaded = load_pretrained(tmp_path / "out")
    assert _stored(loaded).keys() == demo_state.keys()
    assert all(torch.equal(v, demo_state[k]) for k, v in _stored(loaded).items())

    key = _first_matrix(demo_state)
    del demo_state[key]
    torch.save(_zoo_layout(demo_state), tmp_path / "bad.pth")
    result = runner.invoke(
        app, ["convert", str(tmp_path / "bad.pth"), str(tmp_path / "bad"), "--variant", "demo"]
    )
    assert result.exit_code == 1
    assert "conversion failed" in result.stderr
    assert key in result.stderr
    assert not (tmp_path / "bad").exists()


# --- damaged files: one clear error that names the file -------------------------------------------


def _truncated_safetensors(path: Path) -> None:
    save_file({"weight": torch.zeros(64)}, path)
    path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize(
    ("name", "write", "reason"),
    [
        ("garbage.safetensors", lambda p: p.write_bytes(b"\xff" * 64), "as a safetensors file: .*header"),
        ("cut.safetensors", _truncated_safetensors, "as a safetensors file: "),
        ("list.pth", lambda p: torch.save([1, 2, 3], p), "the checkpoint is a list, not a mapping"),
    ],
)
def test_damaged_checkpoints_are_refused_naming_the_file(
    name: str, write: Callable[[Path], None], reason: str, tmp_path: Path
) -> None:
    write(tmp_path / name)
    with pytest.raises(CheckpointError, match=f"{re.escape(str(tmp_path / name))}.*{reason}"):
        load_checkpoint(torch.nn.Linear(1, 1), tmp_path / name)


def _demo_config_document(**changes: object) -> dict:
    return {**get_config("demo").to_dict(), "metadata": {"format": "glee-serve/1"}, **changes}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nope", "is not a converted GLEE config: not valid JSON"),
        (json.dumps(_demo_config_document(hidden_dim="abc")), 'GleeConfig.hidden_dim must be int, not "abc"'),
        (json.dumps(_demo_config_document(early_fusion=1)), "GleeConfig.early_fusion must be bool, not 1"),
        (
            json.dumps(_demo_config_document(backbone={"depths": [2, 2]})),
            re.escape("GleeConfig.backbone.depths must be tuple[int, int, int, int], not [2, 2]"),
        ),
        (json.dumps(_demo_config_document(text=3)), "GleeConfig.text must be an object, not 3"),
        (json.dumps(_demo_config_document(metadata=[])), "'metadata' is a list, not an object"),
    ],
)
def test_a_bad_config_json_is_refused_naming_the_file_and_field(
    text: str, reason: str, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(
        (ValueError, CheckpointError), match=f"{re.escape(str(tmp_path / 'config.json'))}.*{reason}"
    ):
        read_pretrained_config(tmp_path)


def test_a_config_json_of_the_right_types_still_loads(tmp_path: Path) -> None:
    """Integers where floats are expected are numbers, null where a field allows None."""
    document = _demo_config_document(mask_guided_radius=8, mask_box_margin=None)
    (tmp_path / "config.json").write_text(json.dumps(document))
    config, _ = read_pretrained_config(tmp_path)
    assert config == dataclasses.replace(get_config("demo"), mask_guided_radius=8, mask_box_margin=None)


@pytest.fixture
def trained_demo_dir(tmp_path: Path) -> Path:
    """A converted directory whose config differs from the demo variant's defaults (extra heads), as the
    shipped glee-demo does."""
    config = dataclasses.replace(get_config("demo"), class_refine=True, ground_relation_layers=1)
    torch.manual_seed(0)
    return save_pretrained(build_glee(config), tmp_path / "trained", config)


@pytest.mark.parametrize("variant", [None, "demo"])
def test_a_converted_directory_is_reconverted_with_its_own_config(
    trained_demo_dir: Path, variant: str | None, tmp_path: Path
) -> None:
    report = convert(trained_demo_dir, tmp_path / "fp16", variant=variant, dtype="float16", progress=False)
    assert report.ok
    config, metadata = read_pretrained_config(tmp_path / "fp16")
    assert config == read_pretrained_config(trained_demo_dir)[0]
    assert metadata["dtype"] == "float16"


def test_a_variant_that_contradicts_a_converted_directory_is_refused(
    trained_demo_dir: Path, tmp_path: Path
) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app, ["convert", str(trained_demo_dir), str(tmp_path / "out"), "--variant", "lite"]
    )
    assert result.exit_code == 1
    assert "holds a 'demo' model (its config.json), not 'lite'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_convert_prints_a_reason_with_brackets_whole(tmp_path: Path) -> None:
    """rich would read "[int, int, int, int]" in a message as markup and drop it."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text(json.dumps(_demo_config_document(pixel_mean=[1, 2])))
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "src"), str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "GleeConfig.pixel_mean must be tuple[float, float, float], not [1, 2]" in result.stderr
