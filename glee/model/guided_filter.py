"""Colour guided filter (He, Sun & Tang, TPAMI 2013) that snaps upsampled mask probabilities to image edges.

GLEE predicts masks at a quarter of the model-input resolution, and the demo model's inputs are smaller
than its images, so one mask cell covers up to 8x8 image pixels and a small object's outline is a blur.
The guided filter fits, in every (2r+1)^2 window, the probability map ``p`` as an affine function of the
image colours ``I``::

    a = (Sigma_I + eps * Id)^-1 cov(I, p),    b = mean(p) - a . mean(I)
    q = mean(a) . I + mean(b)                  (means over the windows covering each pixel)

so ``q`` follows ``p`` where colours are flat and switches where the colour changes. ``eps`` (colours in
0..1) is the colour variance treated as noise. ``q`` equals ``p`` wherever ``p`` is constant over all the
windows around a pixel, so only a band of 2r pixels around each mask's edge can change, and the result is
exactly zero farther than 2r from where ``p`` is non-zero. Each mask is therefore filtered in its own crop:
the box of its support grown by 3r, so that the border windows of the crop see zeros only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Pixels where the probability is below this are zero for the filter's purpose (no crop reaches them).
SUPPORT_PROBABILITY = 0.01


def _window_sums(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sums over the windows [i - r, i + r] along ``dim`` (zeros beyond the ends), from a running sum."""
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    running = F.pad(x, (r + 1, r)).cumsum(-1)
    return (running[..., 2 * r + 1 :] - running[..., :n]).movedim(-1, dim)


def _window_sizes(n: int, r: int, device: torch.device) -> torch.Tensor:
    """How many of the indices [i - r, i + r] lie in 0..n-1, for every i."""
    i = torch.arange(n, device=device)
    return (i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1


def _mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Box mean over the (2r+1)^2 windows of [C, h, w], windows clipped at the border. O(1) per pixel
    whatever r, from running sums in float64 (differences of large sums keep their precision)."""
    h, w = x.shape[-2:]
    sums = _window_sums(_window_sums(x.double(), r, -1), r, -2)
    counts = [_window_sizes(n, r, x.device) for n in (h, w)]
    return (sums / (counts[0][:, None] * counts[1][None])).to(x.dtype)


# The six distinct entries of a symmetric 3x3 matrix, as (row, column) pairs.
_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def guided_filter(image: torch.Tensor, p: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """image [3, h, w] colours in 0..1, p [h, w] -> the filtered [h, w]."""
    mean_i = _mean(image, radius)
    mean_p = _mean(p[None], radius)[0]
    products = _mean(torch.stack([image[i] * image[j] for i, j in _PAIRS]), radius)
    s00, s01, s02, s11, s12, s22 = (
        products[k] - mean_i[i] * mean_i[j] + (eps if i == j else 0.0) for k, (i, j) in enumerate(_PAIRS)
    )
    v0, v1, v2 = _mean(image * p, radius) - mean_i * mean_p  # cov(I, p)
    # a = (Sigma + eps Id)^-1 cov(I, p) by the adjugate of the symmetric 3x3 matrix.
    c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
    c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
    det = s00 * c00 + s01 * c01 + s02 * c02
    a = torch.stack(
        [c00 * v0 + c01 * v1 + c02 * v2, c01 * v0 + c11 * v1 + c12 * v2, c02 * v0 + c12 * v1 + c22 * v2]
    )
    a = a / det
    b = mean_p - (a * mean_i).sum(0)
    return (_mean(a, radius) * image).sum(0) + _mean(b[None], radius)[0]


def refine_masks(image: torch.Tensor, prob: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """image [3, h, w] in 0..1, prob [U, h, w] mask probabilities -> [U, h, w] guided-filtered ones.

    Equals filtering the whole image with each ``prob`` set to zero outside the box of its support
    (``prob`` >= SUPPORT_PROBABILITY), at the cost of that box grown by 3r.
    """
    out = torch.zeros_like(prob)
    h, w = prob.shape[-2:]
    for u in range(prob.shape[0]):
        ys, xs = torch.nonzero(prob[u] >= SUPPORT_PROBABILITY, as_tuple=True)
        if len(ys) == 0:
            continue
        y0, y1 = max(int(ys.min()) - 3 * radius, 0), min(int(ys.max()) + 3 * radius + 1, h)
        x0, x1 = max(int(xs.min()) - 3 * radius, 0), min(int(xs.max()) + 3 * radius + 1, w)
        out[u, y0:y1, x0:x1] = guided_filter(image[:, y0:y1, x0:x1], prob[u, y0:y1, x0:x1], radius, eps)
    return out
