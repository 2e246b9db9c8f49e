"""Training configuration: a JSON file validated by pydantic (``configs/demo.json`` is the demo run).

The model itself is named by ``model`` (a variant of :func:`glee.model.config.get_config`) plus optional
``model_overrides`` of :class:`GleeConfig` fields, so a run records exactly which architecture it trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from glee.data.readers import read_json
from glee.model.config import GleeConfig, get_config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


class TaskMix(_Strict):
    """Relative frequencies of the step tasks, of detection list kinds and of visual prompt kinds."""

    detect: float = 0.45
    ground: float = 0.2
    visual: float = 0.2
    pairs: float = 0.15
    max_frame_gap: int = Field(4, ge=1)
    # Detection category lists.
    all_shapes: float = 0.3
    some_shapes: float = 0.15
    phrases: float = 0.2
    all_phrases: float = 0.15
    object: float = 0.1
    mixed: float = 0.1
    # Visual prompts.
    point: float = 0.4
    box: float = 0.3
    scribble: float = 0.2
    mask: float = 0.1
    negative_points: float = 0.25


class LossWeights(_Strict):
    """GLEE / MaskDINO weights; the matcher uses class, L1, GIoU (and confidence for visual prompts)."""

    cls: float = 4.0
    conf: float = 4.0
    l1: float = 5.0
    giou: float = 2.0
    mask: float = 5.0
    dice: float = 5.0
    track: float = 2.0
    # Not in GLEE: matched queries also classified against all shape names and colour phrases (0 = off).
    vocabulary: float = 0.0
    # Not in GLEE: grounding steps add a softmax cross-entropy over the last layer's queries, whose
    # positives are the queries with box IoU >= refer_iou to the referred object — the top-1 choice that
    # REC accuracy counts, where the focal loss trains each query alone (0 = off).
    refer: float = 0.0
    refer_iou: float = Field(0.5, gt=0.0, le=1.0)
    focal_alpha: float = 0.25
    mask_points: int = Field(768, ge=16)
    track_temperature: float = 0.1


class TrainConfig(_Strict):
    model: str = "demo"
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    threads: int = Field(2, ge=1)
    size: int = Field(256, ge=32)
    batch_size: int = Field(8, ge=2)
    lr: float = Field(2e-4, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    grad_clip: float = Field(0.1, ge=0.0)
    # Wall-clock and step budgets; training ends at whichever comes first (0 = no limit).
    max_minutes: float = Field(60.0, ge=0.0)
    max_steps: int = Field(0, ge=0)
    # "step": the learning rate drops by lr_drop_factor once lr_drop_at of the budget is spent.
    # "linear": it falls linearly from lr to 0 over the whole budget ("Budgeted Training", ICLR 2020); needs a
    # budget. It suits runs that end near convergence (fine-tuning): the demo run, far from it, lost 0.24
    # box AP50 with it (TRAINING.md).
    lr_schedule: Literal["step", "linear"] = "step"
    lr_drop_at: float = Field(0.9, ge=0.0, le=1.0)
    lr_drop_factor: float = Field(0.1, gt=0.0, le=1.0)
    denoising_queries: int = Field(60, ge=0)
    dn_label_noise: float = 0.25
    dn_box_noise: float = 1.0
    checkpoint_minutes: float = Field(5.0, gt=0.0)
    log_every: int = Field(10, ge=1)
    export_dtype: str = "float16"
    # Forward-pass precision: "bfloat16" runs the model under torch.autocast (matmuls and convolutions in
    # bf16; weights, optimizer and losses in fp32). Demo run: 1.17x faster steps (2 cores, AVX512-BF16).
    precision: Literal["float32", "bfloat16"] = "float32"
    # Names (prefixes) of the parameters that train; everything else is frozen and its modules run in eval
    # mode (batch-norm statistics stay). Empty = all. E.g. ["predictor.ground_relation"] trains one new head
    # on top of a model given with ``--init``.
    trainable: list[str] = Field(default_factory=list)
    # "all": the GLEE training loop above. A head stage trains one head of the model given with ``--init``
    # on ``stage_samples`` cached outputs of the frozen rest, ``stage_holdout`` of them held out and reported;
    # batch_size / lr / max_steps apply to the head. "relation": the grounding relation head on grounding
    # samples (``glee.train.relation_stage``); "class": the class refinement on detection samples
    # (``glee.train.class_stage``).
    stage: Literal["all", "relation", "class"] = "all"
    stage_samples: int = Field(4000, ge=2)
    stage_holdout: float = Field(0.1, ge=0.0, lt=1.0)
    # Relation stage: also fit each sample's three mirror images (left-right, top-bottom, both), built from
    # its cached outputs without a forward (``GroundingSamples.mirrored``); held-out samples are not mirrored.
    stage_mirrors: bool = False
    tasks: TaskMix = Field(default_factory=TaskMix)
    loss: LossWeights = Field(default_factory=LossWeights)

    @model_validator(mode="after")
    def _needs_budget(self) -> TrainConfig:
        """A run without either budget would never end (nor drop or decay its learning rate)."""
        if self.max_minutes <= 0 and self.max_steps <= 0:
            raise ValueError("max_minutes and max_steps are both 0 (no limit): set one of them")
        return self

    @model_validator(mode="after")
    def _buildable(self) -> TrainConfig:
        """A model override of the wrong type or value fails when the config is read, naming the field,
        not once the run builds its model."""
        self.glee_config()
        return self

    def glee_config(self) -> GleeConfig:
        """The GLEE architecture this run trains."""
        base = get_config(self.model).to_dict()
        base.update(self.model_overrides)
        return GleeConfig.from_dict(base)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.model_validate(read_json(path, "training config"))
