"""The guided filter that snaps the demo model's upsampled masks to colour edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from glee.evaluation.iou import mask_pair_iou
from glee.model.guided_filter import SUPPORT_PROBABILITY, _mean, guided_filter, refine_masks


def _disc(h: int, w: int, cy: float, cx: float, r: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (ys - cy) ** 2 + (xs - cx) ** 2 <= r**2


@pytest.mark.parametrize("radius", [1, 3, 7])
def test_box_means_match_average_pooling_with_clipped_windows(radius: int) -> None:
    x = torch.rand(4, 23, 31, generator=torch.Generator().manual_seed(radius))
    expected = F.avg_pool2d(x[None], 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)[0]
    torch.testing.assert_close(_mean(x, radius), expected, atol=1e-6, rtol=0)


def test_windows_wider_than_the_image_average_all_of_it() -> None:
    x = torch.rand(1, 9, 12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_mean(x, 20), x.mean().expand(1, 9, 12), atol=1e-6, rtol=0)


def test_filtering_each_mask_in_its_crop_equals_filtering_the_whole_image() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 90, 120, generator=g)
    prob = torch.zeros(3, 90, 120)
    prob[0, 30:60, 40:80] = torch.rand(30, 40, generator=g)
    prob[1, :15, 100:] = 0.9  # touches the image corner: its crop is clipped
    prob[1, 50, 5] = SUPPORT_PROBABILITY / 2  # below the support: treated as zero
    out = refine_masks(image, prob, 4, 1e-3)
    assert not out[2].any()  # an empty mask stays empty
    for u in range(2):
        ys, xs = torch.nonzero(prob[u] >= SUPPORT_PROBABILITY, as_tuple=True)
        inside = torch.zeros_like(prob[u])
        box = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        inside[box] = prob[u][box]
        torch.testing.assert_close(out[u], guided_filter(image, inside, 4, 1e-3), atol=1e-5, rtol=0)


def test_a_blurred_mask_snaps_to_its_objects_edge_and_not_into_a_touching_object() -> None:
    """A red disc beside a touching blue one on noisy grey, its mask known only on a grid of 8x8 cells and
    upsampled bilinearly (as the demo model's masks are on a 512-pixel image)."""
    h = w = 128
    red, blue = _disc(h, w, 64, 48, 22), _disc(h, w, 64, 92, 22) & ~_disc(h, w, 64, 48, 22)
    image = torch.full((3, h, w), 0.5)
    image[:, red] = torch.tensor([0.86, 0.16, 0.16])[:, None]
    image[:, blue] = torch.tensor([0.16, 0.31, 0.86])[:, None]
    image = (image + 0.03 * torch.randn(3, h, w, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    cells = F.avg_pool2d(red[None, None].float(), 8)
    prob = F.interpolate(cells, size=(h, w), mode="bilinear", align_corners=False)[0]
    truth = red.numpy()
    before = mask_pair_iou((prob[0] > 0.5).numpy(), truth)
    snapped = refine_masks(image, prob, 8, 1e-3)[0] > 0.5
    assert mask_pair_iou(snapped.numpy(), truth) > max(0.97, before + 0.02)
    assert not (snapped & blue).any()


def test_a_flat_probability_is_kept() -> None:
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(3))
    for value in (0.0, 0.3, 1.0):
        out = guided_filter(image, torch.full((40, 40), value), 5, 1e-3)
        np.testing.assert_allclose(out.numpy(), value, atol=1e-5)
