"""Parity with the official GLEE-Lite implementation (FoundationVision/GLEE 6f5a19d) on generated weights.

tests/data/parity holds the official raw outputs for five tasks on one image; the weights are regenerated
bit-exactly by tests/parity/official_weights.py and loaded through the official zoo layout.
Tolerances are the fixture's (README section 6): rows aligned by Hungarian matching first, since
near-tied selection scores may permute query rows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment

from glee.model import build_glee, load_checkpoint
from tests.parity.official_weights import official_zoo_state_dict

DATA = Path(__file__).parent / "data"
PARITY = DATA / "parity"
CATEGORIES = ["cat", "green triangle", "yellow star", "car", "person"]
EXPRESSION = "the blue square on the right"


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("zoo") / "GLEE_Lite_joint.pth"
    torch.save(official_zoo_state_dict(DATA / "glee-lite-statedict-keys.tsv"), path)
    model = build_glee("lite")
    report = load_checkpoint(model, path)
    assert not report.missing and not report.unexpected
    return model


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    img = np.array(Image.open(PARITY / "input_350x470.png").convert("RGB"))
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()


def _run(model, pixels: torch.Tensor, task: str, ref) -> dict[str, torch.Tensor]:
    if task == "category":
        return model.forward_raw(pixels, categories=CATEGORIES)
    if task == "grounding":
        return model.forward_raw(pixels, expression=EXPRESSION)
    mask = torch.from_numpy(ref["prompt_mask"])
    return model.forward_raw(pixels, categories=["object"], prompt_mask=mask, prompt_type=task.split("_")[1])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["category", "grounding", "visual_point", "visual_box", "visual_scribble"])
def test_matches_official_outputs(lite, pixels, task: str) -> None:
    ref = np.load(PARITY / f"{task}.npz")
    out = {k: v[0].numpy() for k, v in _run(lite, pixels, task, ref).items()}

    assert set(out["selected_index"].tolist()) == set(ref["enc_topk_indices"].tolist())
    np.testing.assert_allclose(out["selection_scores"], ref["enc_select_scores"], atol=1e-3, rtol=0)

    ours = np.concatenate([out["pred_logits"], 100 * out["pred_boxes"], out["pred_scores"]], 1)
    theirs = np.concatenate([ref["pred_logits"][0], 100 * ref["pred_boxes"][0], ref["pred_scores"][0]], 1)
    rows, cols = linear_sum_assignment(np.abs(ours[:, None] - theirs[None]).max(-1))
    perm = np.empty(len(cols), dtype=int)
    perm[cols] = rows  # official row j <-> our row perm[j]

    def close(name: str, atol: float) -> None:
        np.testing.assert_allclose(out[name][perm], ref[name][0], atol=atol, rtol=0, err_msg=name)

    close("pred_logits", 1e-3)
    close("pred_scores", 1e-3)
    close("pred_track_embed", 1e-3)
    close("pred_boxes", 1e-4)
    masks = out["pred_masks"]
    top = masks[perm[ref["topk_query_idx"]]]
    np.testing.assert_allclose(top, ref["pred_masks_topk"].astype(np.float32), atol=1e-3 + 8e-3, rtol=0)
    assert masks.sum(dtype=np.float64) == pytest.approx(float(ref["pred_masks_sum"]), rel=1e-4)
    assert np.abs(masks).sum(dtype=np.float64) == pytest.approx(float(ref["pred_masks_abssum"]), rel=1e-4)


def test_parity_inputs_are_the_official_ones(lite, pixels) -> None:
    """The image, normalized+padded input and token ids the fixture was made with are what we feed."""
    raw = pixels[0].permute(1, 2, 0).to(torch.uint8).numpy().tobytes()
    assert (
        hashlib.sha256(raw).hexdigest() == "1a8207699a9607b99837adcbda6729dbd8925de6186ac018190d9a51f53257c2"
    )
    padded = lite.normalize_and_pad(pixels)
    assert padded.shape == (1, 3, 352, 480)
    digest = hashlib.sha256(padded.numpy().astype("<f4").tobytes()).hexdigest()
    assert digest == "0a68f1d225c92f603e67fef9f7584c2c860110ccbe3fcfe12f08a6643dfce784"
    ids, _ = lite.tokenizer(CATEGORIES, pad_to=77)
    np.testing.assert_array_equal(ids.numpy(), np.load(PARITY / "category.npz")["input_ids"])
