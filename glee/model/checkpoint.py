"""Loading official GLEE checkpoints and writing / reading the project's converted weight directories.

Our modules use the official ``GLEE_Model`` parameter names, so turning a zoo file into our state dict is
only *canonicalization*: unwrap, strip the meta-architecture prefix, drop training-only tensors and collapse
the names under which the official model shares one parameter. No renames, no transposes.

Layouts accepted (all through :func:`canonicalize_state_dict`):

* Model-zoo ``GLEE_{Lite,Plus,Pro}_{pretrain,joint,scaleup}.pth`` / ``GLEE_Lite_vos.pth``: saved from the
  detectron2 meta-architecture, so keys are ``glee.<GLEE_Model key>`` plus ``criterion.empty_weight``,
  possibly wrapped in ``{"model": ...}`` (inferred from the official code, not read from a zoo file).
* Dec-2023 demo files (``GLEE_R50_Scaleup10m.pth`` ...): the hosted demo loads them straight into a bare
  ``GLEE_Model``, so they evidently hold ``GLEE_Model`` keys without the ``glee.`` prefix and without a
  wrapper; that demo's model class has no CLIP teacher, so ``text_encoder_teacher.*`` may be absent. Nothing
  else about that layout is known, and nothing else is special-cased.
* Converted directories (``model.safetensors`` + ``config.json``) and bare ``.safetensors`` files, whose
  keys are already canonical.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import track
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from glee.data.readers import read_json
from glee.model.config import GleeConfig, get_config
from glee.model.glee import GleeModel, build_glee
from glee.model.weights import sha256_file

FORMAT = "glee-serve/1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# config.json = GleeConfig fields + this one extra top-level block describing the file itself.
METADATA_KEY = "metadata"

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

_PREFIX = "glee."
_WRAPPERS = ("model", "state_dict")
_DROPPED = re.compile(
    # Loss-module buffers and the CLIP distillation teacher: training only.
    r"^(?:criterion|text_encoder_teacher)\."
    # Denoising-training label embeddings (<dataset>_label_enc, bdd_det, bdd_inst): unused at inference.
    r"|^predictor\.(?:[^.]+_label_enc|bdd_det|bdd_inst)\."
    # Integer buffers that some transformers / torch versions persist; ours are recomputed, not loaded.
    r"|(?:^|\.)(?:position_ids|num_batches_tracked)$"
)
# The official model registers one box MLP under 19 names and the decoder norm under 2; torch.save keeps
# one storage but the key list has every alias.
_ALIASES = (
    (re.compile(r"^predictor\.(?:decoder\.)?bbox_embed\.\d+\."), "predictor._bbox_embed."),
    (re.compile(r"^predictor\.decoder\.norm\."), "predictor.decoder_norm."),
)
_MAX_LISTED = 20


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or is internally inconsistent."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint does not fit the model: carries the full :class:`LoadReport`."""

    def __init__(self, report: LoadReport) -> None:
        super().__init__(f"checkpoint {report.source} does not match the model:\n{report.problems()}")
        self.report = report


@dataclass
class LoadReport:
    """What happened to every tensor of a checkpoint when it was loaded into a model."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    # (key, shape in the checkpoint, shape in the model)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self, limit: int = _MAX_LISTED) -> str:
        """Human-readable list of what does not fit, at most ``limit`` lines per kind."""
        lines: list[str] = []
        for title, items in (
            ("missing from the checkpoint", self.missing),
            ("unexpected (not in the model)", self.unexpected),
            ("shape mismatch (checkpoint vs model)", [f"{k}: {c} vs {m}" for k, c, m in self.mismatched]),
        ):
            if items:
                lines.append(f"{len(items)} {title}:")
                lines.extend(f"  {item}" for item in items[:limit])
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        return "\n".join(lines)

    def summary(self) -> str:
        head = (
            f"{self.source}: loaded {self.loaded} tensors, dropped {len(self.dropped)}, missing "
            f"{len(self.missing)}, unexpected {len(self.unexpected)}, mismatched {len(self.mismatched)}"
        )
        return head if self.ok else f"{head}\n{self.problems()}"


def canonical_key(key: str) -> str:
    """The ``GLEE_Model`` name behind a checkpoint key: ``glee.`` stripped, shared-weight aliases resolved."""
    key = key.removeprefix(_PREFIX)
    for pattern, target in _ALIASES:
        key, count = pattern.subn(target, key, count=1)
        if count:
            break
    return key


def is_dropped(canonical: str) -> bool:
    """Whether a canonical key names a training-only tensor that no inference model holds."""
    return _DROPPED.search(canonical) is not None


def canonicalize_state_dict(sd: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official (or converted) state dict -> (canonical tensors, keys dropped as training-only).

    Aliases collapse onto their canonical key; if two names of one shared parameter hold different
    values the file is corrupt (the official model cannot have saved it), so that raises. So does a file
    that holds something other than names and tensors (``torch.save`` of any list or number loads).
    """
    if not isinstance(sd, Mapping):
        raise CheckpointError(
            f"the checkpoint is a {type(sd).__name__}, not a mapping of parameter names to tensors"
        )
    flat = _unwrap(sd)
    clean: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in flat.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"entry {key!r} is a {type(value).__name__}, not a tensor")
        canon = canonical_key(key)
        if is_dropped(canon):
            dropped.append(key)
            continue
        if canon in clean:
            if not _same(clean[canon], value):
                raise CheckpointError(
                    f"{key!r} and {origin[canon]!r} both name the shared parameter {canon!r} "
                    "but hold different values: corrupt checkpoint"
                )
            continue
        clean[canon] = value
        origin[canon] = key
    return clean, dropped


def _unwrap(sd: Mapping[str, Any]) -> Mapping[str, Any]:
    """detectron2 saves ``{"model": sd, ...}`` (maybe with optimizer state); others use ``state_dict``."""
    while True:
        inner = next((sd[w] for w in _WRAPPERS if isinstance(sd.get(w), Mapping)), None)
        if inner is None:
            return sd
        sd = inner


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)


def weights_file(path_or_dir: str | os.PathLike[str]) -> Path:
    """The tensor file behind a checkpoint argument: the file itself, or ``<dir>/model.safetensors``."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def read_checkpoint(path_or_dir: str | os.PathLike[str]) -> Mapping[str, Any]:
    """Raw contents of a ``.pth`` / ``.safetensors`` file or converted directory, tensors on CPU.

    ``.pth`` files are read with ``weights_only=True`` (no pickle code execution) and memory-mapped when
    they use the zip format, so a 0.8 GB zoo file costs no extra resident copy before loading.
    """
    path = weights_file(path_or_dir)
    safetensors = path.suffix == ".safetensors"
    try:
        if safetensors:
            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:
        raise _unreadable(path, "safetensors file" if safetensors else "PyTorch checkpoint", exc) from exc


def _unreadable(path: Path, kind: str, exc: Exception) -> CheckpointError:
    return CheckpointError(f"cannot read {path} as a {kind}: {load_failure(path, exc)}")


def load_failure(path: Path, exc: Exception) -> str:
    """``torch.load``'s (or safetensors') reason for failing on ``path``, in one line. torch's weights-only
    refusal is a paragraph that advises ``weights_only=False``, which would run code from the file and
    which no checkpoint of tensors needs."""
    text = str(exc).strip()
    if path.stat().st_size == 0:
        return "the file is empty"
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return f"not a file of tensors only, the one kind read (safely, without running its code): {detail}"
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(model: nn.Module, path_or_dir: str | os.PathLike[str], strict: bool = True) -> LoadReport:
    """Load an official ``.pth``, a ``.safetensors`` file or a converted directory into ``model``.

    With ``strict`` any missing, unexpected or wrongly shaped key raises :class:`CheckpointMismatchError`
    before anything is copied. Keys the model lacks are always reported as unexpected, never skipped
    silently (e.g. ``sot_fuser`` of a Stage-2 file loaded into a model built without visual prompts).
    Tensors are copied into the existing parameters, which casts them to the model's dtype and device.
    """
    path = weights_file(path_or_dir)
    contents = read_checkpoint(path)
    try:
        state, dropped = canonicalize_state_dict(contents)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    expected = model.state_dict()
    report = LoadReport(
        source=str(path),
        # A model may hold keys canonicalization always drops (BatchNorm's num_batches_tracked in the
        # trainable demo backbone): no file can supply them, and they do not affect inference.
        missing=sorted(k for k in expected if k not in state and not is_dropped(k)),
        unexpected=sorted(k for k in state if k not in expected),
        mismatched=[
            (k, tuple(v.shape), tuple(expected[k].shape))
            for k, v in sorted(state.items())
            if k in expected and v.shape != expected[k].shape
        ],
        dropped=dropped,
    )
    if strict and not report.ok:
        raise CheckpointMismatchError(report)
    usable = {k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape}
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report


def save_pretrained(
    model: nn.Module,
    dst_dir: str | os.PathLike[str],
    config: GleeConfig,
    *,
    dtype: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Path:
    """Write ``model.safetensors`` (+ ``config.json``) so :func:`load_pretrained` rebuilds the same model.

    ``dtype`` ("float16", ...) casts floating tensors for a smaller file; loading casts them back to the
    dtype of the model it builds. Files are written under a temporary name and renamed, so a crash never
    leaves a truncated checkpoint behind a valid-looking name.
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items() if not is_dropped(k)}
    tensors: dict[str, torch.Tensor] = {}
    for key, value in track(
        state.items(), description="writing tensors", total=len(state), disable=not progress
    ):
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(DTYPES[dtype])
        tensors[key] = value.contiguous()
    _atomic_write(dst / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    document = config.to_dict()
    stored = dtype or str(next(model.parameters()).dtype).removeprefix("torch.")
    document[METADATA_KEY] = {"format": FORMAT, "dtype": stored, **(metadata or {})}
    _atomic_write(dst / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(document, indent=2) + "\n"))
    return dst


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file, then make it readable by all (safetensors creates files 0600,
    which a server running as another user, e.g. in a container, could not read) and move it in place."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def read_pretrained_config(src_dir: str | os.PathLike[str]) -> tuple[GleeConfig, dict[str, Any]]:
    """``config.json`` of a converted directory -> (model config, metadata block). A hand-edited file that
    is not JSON or holds a wrong field fails here, naming the file, instead of deep inside torch."""
    path = Path(src_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{src_dir} is not a converted GLEE directory: no {CONFIG_NAME}")
    document = read_json(path, "converted GLEE config")
    metadata = document.pop(METADATA_KEY, {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: {METADATA_KEY!r} is a {type(metadata).__name__}, not an object")
    if metadata.get("format", FORMAT) != FORMAT:
        raise CheckpointError(f"{path}: format {metadata['format']!r} is not {FORMAT!r}")
    try:
        return GleeConfig.from_dict(document), metadata
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def check_pretrained(src_dir: str | os.PathLike[str]) -> None:
    """What :func:`load_pretrained` reads, checked without loading the tensors: config.json
    (:func:`read_pretrained_config`) and the header of model.safetensors, so that a damaged directory
    fails before a server binds its ports."""
    read_pretrained_config(src_dir)
    path = weights_file(src_dir)
    try:
        with safe_open(path, framework="pt"):
            pass
    except Exception as exc:
        raise _unreadable(path, "safetensors file", exc) from exc


def load_pretrained(src_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> GleeModel:
    """Rebuild the model described by ``config.json`` and load ``model.safetensors`` strictly (eval mode)."""
    config, _ = read_pretrained_config(src_dir)
    model = build_glee(config)
    load_checkpoint(model, src_dir, strict=True)
    return model.to(device).eval()


def convert(
    src: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    variant: str | None = None,
    dtype: str = "float32",
    progress: bool = True,
) -> LoadReport:
    """Official checkpoint (or converted directory) -> converted directory, after a strict load into a
    freshly built model: ``variant`` (default lite), or for a converted directory the model of its config.

    The strict load happens before anything is written, so a checkpoint that does not fit the variant
    fails loudly (:class:`CheckpointMismatchError`) instead of producing a half-random model.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    config = _source_config(src, variant)
    model = build_glee(config)
    report = load_checkpoint(model, src, strict=True)
    source = weights_file(src)
    save_pretrained(
        model,
        dst_dir,
        config,
        dtype=dtype,
        progress=progress,
        metadata={
            "source": source.name,
            "source_sha256": sha256_file(source),
            "dropped": len(report.dropped),
        },
    )
    return report


def _source_config(src: str | os.PathLike[str], variant: str | None) -> GleeConfig:
    """The model a checkpoint is converted into. A converted directory records its own config, which may
    differ from its variant's defaults (a trained demo adds heads), so it is rebuilt from that config;
    a ``variant`` given with it must be the config's own, else the wrong model was meant."""
    if not (Path(src) / CONFIG_NAME).is_file():
        return get_config(variant or "lite")
    config, _ = read_pretrained_config(src)
    if variant not in (None, config.name):
        raise CheckpointError(
            f"{src} holds a {config.name!r} model (its {CONFIG_NAME}), not {variant!r}: "
            "leave out the variant to convert it as it is"
        )
    return config
