"""Regenerates the GLEE-Lite parity weights bit-exactly (rules of the parity fixture README, section 1).

The official parity fixture was produced by running the official code on deterministic pseudo-random
weights. Each canonical key has its own PCG64 stream seeded with ``crc32("dev:" + key)``; a fixed rule
table turns the standard-normal draw into the tensor (norms = 1, running stats = 0/1, biases and
embeddings x0.02, raw ``x @ W`` matrices 1/sqrt(rows), other weights 1/sqrt(fan_in)), scaled in float64
and rounded to float32. Aliases of a shared parameter get the very same tensor.

Only numpy is needed for the tensors and digests; torch only to hand out state dicts.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from glee.model.checkpoint import canonical_key

NAMESPACE = "dev:"
EXPECTED_DIGEST = "b661df8127042ed1c398df6fcbb59f9916e4efcd85d0eea9879130a5369f41ea"
# The meta-architecture's only non-GLEE_Model entry in a zoo file. Its value is unknown and irrelevant
# (converters drop it); ones of the right shape keep the file layout faithful.
CRITERION_KEYS = {"criterion.empty_weight": (2,)}

_EMBEDDING_NAMES = {
    "pn_indicator.weight",
    "predictor.bdd_det.weight",
    "predictor.bdd_inst.weight",
    "level_embed",
}
_RAW_MATRIX = re.compile(r"lang_projection|predictor\.category_embed|mask_sptial_embed\.\d+")


def read_key_list(tsv_path: str | Path) -> dict[str, tuple[int, ...]]:
    """``key<TAB>(d0, d1, ...)<TAB>torch.float32`` lines (``#`` comments) -> {key: shape}, file order."""
    shapes: dict[str, tuple[int, ...]] = {}
    for line in Path(tsv_path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        if dtype != "torch.float32":
            raise ValueError(f"{key}: unexpected dtype {dtype}")
        shapes[key] = tuple(ast.literal_eval(shape))
    return shapes


def _is_embedding(key: str) -> bool:
    return key.endswith(("embedding.weight", "_label_enc.weight", ".level_embed")) or key in _EMBEDDING_NAMES


def generate_tensor(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 tensor of canonical ``key``: the first matching rule of the README table wins."""
    nd = len(shape)
    if key.endswith("running_var"):
        return np.ones(shape, np.float32)
    if key.endswith("running_mean"):
        return np.zeros(shape, np.float32)
    if nd == 1 and key.endswith(".weight") and not _is_embedding(key):
        return np.ones(shape, np.float32)
    rng = np.random.default_rng(zlib.crc32((NAMESPACE + key).encode("utf-8")))
    x = rng.standard_normal(shape, dtype=np.float64)
    if key.endswith("bias") or _is_embedding(key) or nd <= 1:
        scale = 0.02
    elif _RAW_MATRIX.fullmatch(key):
        scale = 1.0 / math.sqrt(shape[0])
    else:
        scale = 1.0 / math.sqrt(math.prod(shape[1:]))
    return (x * scale).astype(np.float32)


def canonical_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """{canonical key: shape} for a key list; aliases must agree on the shape of what they share."""
    out: dict[str, tuple[int, ...]] = {}
    for key, shape in shapes.items():
        canon = canonical_key(key)
        if out.setdefault(canon, shape) != shape:
            raise ValueError(f"{key} {shape} aliases {canon} {out[canon]}")
    return out


def iter_canonical_tensors(tsv_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(canonical key, tensor) for every canonical key of the key list, one tensor alive at a time."""
    for key, shape in canonical_shapes(read_key_list(tsv_path)).items():
        yield key, generate_tensor(key, shape)


def tensor_sha256(array: np.ndarray) -> str:
    """sha256 of the float32 little-endian C-order bytes, as in ``weights_sha256.json``."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").data).hexdigest()


def overall_digest(per_key: Mapping[str, str]) -> str:
    """sha256 over sorted canonical keys of ``key`` + its hex digest, no separators (README section 1)."""
    digest = hashlib.sha256()
    for key in sorted(per_key):
        digest.update(key.encode("utf-8") + per_key[key].encode("ascii"))
    return digest.hexdigest()


def per_key_digests(tsv_path: str | Path) -> dict[str, str]:
    return {key: tensor_sha256(array) for key, array in iter_canonical_tensors(tsv_path)}


def official_state_dict(tsv_path: str | Path) -> dict[str, torch.Tensor]:
    """``GLEE_Model.state_dict()`` with the parity weights: every listed key, aliases share one tensor."""
    shapes = read_key_list(tsv_path)
    canonical = {key: torch.from_numpy(array) for key, array in iter_canonical_tensors(tsv_path)}
    return {key: canonical[canonical_key(key)] for key in shapes}


def official_zoo_state_dict(tsv_path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """The model-zoo layout: ``{"model": {"glee." + key: tensor, ..., "criterion.empty_weight": ...}}``."""
    model = {f"glee.{key}": tensor for key, tensor in official_state_dict(tsv_path).items()}
    model.update({key: torch.ones(shape) for key, shape in CRITERION_KEYS.items()})
    return {"model": model}
