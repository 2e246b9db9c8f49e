"""glee::ms_deform_attn against an explicit float64 bilinear reference written from the definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glee.model.ops.ms_deform_attn import MSDeformAttn, ms_deform_attn

SHAPES = [(6, 9), (3, 5), (7, 4)]  # non-square levels, one taller than wide


def _bilinear_zero_pad(img: np.ndarray, x: float, y: float) -> np.ndarray:
    """img [H, W, D]; (x, y) normalized with pixel centres at (j+0.5)/W; zero outside the map."""
    h, w, d = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    out = np.zeros(d)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[yy, xx]
    return out


def _reference(value, shapes, loc, weights) -> np.ndarray:
    n, _, m, d = value.shape
    _, lq, _, _, num_points, _ = loc.shape
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    out = np.zeros((n, lq, m, d))
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                for lvl, (h, w) in enumerate(shapes):
                    img = value[b, starts[lvl] : starts[lvl + 1], head].reshape(h, w, d)
                    for p in range(num_points):
                        x, y = loc[b, q, head, lvl, p]
                        out[b, q, head] += weights[b, q, head, lvl, p] * _bilinear_zero_pad(img, x, y)
    return out.reshape(n, lq, m * d)


def _inputs(dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, lq, m, d, points = 2, 5, 2, 3, 3
    s = sum(h * w for h, w in SHAPES)
    value = torch.randn(n, s, m, d, generator=g, dtype=dtype)
    # Locations from -0.3 to 1.3: outside the map, on the border and inside.
    loc = torch.rand(n, lq, m, len(SHAPES), points, 2, generator=g, dtype=dtype) * 1.6 - 0.3
    loc[0, 0, 0, 0, 0] = torch.tensor([0.0, 0.0], dtype=dtype)  # exact corner
    loc[0, 0, 0, 0, 1] = torch.tensor([1.0, 0.5], dtype=dtype)  # right border
    loc[0, 0, 1, 1, 2] = torch.tensor([1.05, -0.02], dtype=dtype)  # just outside
    weights = torch.rand(n, lq, m, len(SHAPES), points, generator=g, dtype=dtype)
    weights = (weights.flatten(-2).softmax(-1)).view_as(weights)
    spatial = torch.tensor(SHAPES, dtype=torch.long)
    starts = torch.cat([spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]])
    return value, spatial, starts, loc, weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_op_matches_explicit_bilinear(dtype: torch.dtype) -> None:
    value, spatial, starts, loc, weights = _inputs(dtype)
    expected = _reference(value.double().numpy(), SHAPES, loc.double().numpy(), weights.double().numpy())
    got = ms_deform_attn(value, spatial, starts, loc, weights)
    assert got.dtype == dtype and got.shape == (2, 5, 6)
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-5, rtol=0)


def test_fully_outside_samples_are_zero() -> None:
    value, spatial, starts, loc, weights = _inputs(torch.float64)
    loc = torch.full_like(loc, 2.0)
    assert torch.count_nonzero(ms_deform_attn(value, spatial, starts, loc, weights)) == 0


def test_op_registration_is_consistent() -> None:
    """Fake kernel, schema and dispatch agree (what torch.compile / export rely on)."""
    torch.library.opcheck(
        ms_deform_attn, _inputs(torch.float32), test_utils=("test_schema", "test_faketensor")
    )


def test_module_training_path_has_gradients_and_matches_eval() -> None:
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=3, n_heads=2, n_points=2)
    with torch.no_grad():  # the init zeroes the query-dependent weights; make the query matter
        for p in attn.parameters():
            p.normal_(0, 0.3)
    spatial = torch.tensor(SHAPES, dtype=torch.long)
    starts = torch.cat([spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]])
    memory = torch.randn(1, int(spatial.prod(1).sum()), 16)
    query = torch.randn(1, 4, 16, requires_grad=True)
    ref = torch.rand(1, 4, 3, 4)
    attn.eval()
    with torch.no_grad():
        expected = attn(query, ref, memory, spatial, starts)
    attn.train()
    out = attn(query, ref, memory, spatial, starts)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert query.grad is not None and query.grad.abs().sum() > 0
