"""The training loop: batches from the cache, one forward per step, AdamW, checkpoints, logs, export.

A run directory holds ``train.json`` (the config it ran), ``cache.npz`` (decoded data), ``checkpoint.pt``
(model, optimizer, denoising embedding, step, clock and random states — enough to resume exactly where it
stopped), ``log.jsonl`` (one line per ``log_every`` steps), for a head stage ``stage_samples.pt`` (the
frozen model's collected outputs, reused by a re-run whose collection would be the same) and, at the end,
``model/`` (the inference export, loadable by ``GleePredictor.load``). The budget is wall-clock minutes of
training steps (and/or a step count); the learning-rate drop happens at a fixed fraction of that budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from glee.model.checkpoint import CheckpointError, load_checkpoint, load_failure, save_pretrained
from glee.model.glee import GleeModel, TextPrompt, VisualPrompt, build_glee
from glee.train import class_stage, relation_stage
from glee.train.cache import Cache, load_or_build
from glee.train.class_stage import CLASS_PREFIX, DetectionSamples, class_loss
from glee.train.config import TrainConfig
from glee.train.criterion import Criterion, Targets, mask_targets
from glee.train.denoising import build_denoising
from glee.train.relation_stage import RELATION_PREFIX, GroundingSamples, relation_loss
from glee.train.tasks import Batch, TaskSampler

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
EXPORT = "model"
CONFIG_COPY = "train.json"
CACHE = "cache.npz"
STAGE_SAMPLES = "stage_samples.pt"

# What a head stage caches and fits (see ``TrainConfig.stage``).
HeadSamples = GroundingSamples | DetectionSamples


@dataclasses.dataclass(frozen=True)
class HeadStage:
    prefix: str  # the parameters it trains
    needs: str  # the model setting that adds them
    task: str  # the sampler task whose batches it caches
    samples: type[HeadSamples]
    # Whether collecting runs the head it fits: the class stage matches the ground truth to the frozen
    # queries by their refined logits, so its samples' targets depend on the starting head's weights; the
    # relation stage caches the logits before its head.
    collects_with_head: bool


HEAD_STAGES = {
    "relation": HeadStage(RELATION_PREFIX, "ground_relation_layers > 0", "ground", GroundingSamples, False),
    "class": HeadStage(CLASS_PREFIX, "class_refine", "detect", DetectionSamples, True),
}


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here. Without it (an AVX2-only CPU) bf16 autocast is emulated:
    the relation stage's frozen forwards took 566 ms per sample against 90 in float32 (TRAINING.md)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        data: list[Path],
        out_dir: Path,
        *,
        init: Path | None = None,
        resume: bool = False,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.cfg = cfg
        self.out = out_dir
        self.echo = echo
        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.cache: Cache = load_or_build(data, cfg.size, self.out / CACHE, echo=echo)
        self.sampler = TaskSampler(self.cache, cfg.tasks, cfg.batch_size, np.random.default_rng(cfg.seed))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.glee_cfg = cfg.glee_config()
        self.model: GleeModel = build_glee(self.glee_cfg).train()
        if init is not None:
            report = load_checkpoint(self.model, init, strict=False)
            self.echo(report.summary())
            expected = len(self.model.state_dict())
            if report.loaded < expected / 2:
                self.echo(
                    f"warning: --init gave {report.loaded} of the model's {expected} tensors, so most of it "
                    "starts from scratch; are the weights of another model config?"
                )
        if cfg.precision == "bfloat16" and not cpu_has_native_bf16():
            self.echo(
                'warning: "precision": "bfloat16" on a CPU without native bf16 (AVX512-BF16 or AMX): '
                "autocast emulates it, several times slower than float32 (TRAINING.md); consider float32"
            )
        if cfg.stage != "all":
            head = HEAD_STAGES[cfg.stage]
            if not any(name.startswith(head.prefix) for name, _ in self.model.named_parameters()):
                raise ValueError(f'stage "{cfg.stage}" needs a model with {head.needs}')
            freeze_except(self.model, [head.prefix])
        elif cfg.trainable:
            freeze_except(self.model, cfg.trainable)
        d = self.glee_cfg.hidden_dim
        self.label_embed = nn.Embedding(max(len(self.cache.categories), 1), d)
        params = [p for p in [*self.model.parameters(), *self.label_embed.parameters()] if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.criterion = Criterion(cfg.loss)
        self.step = 0
        self.elapsed = 0.0
        self.dropped = False
        if resume and (self.out / CHECKPOINT).exists():
            self._load(self.out / CHECKPOINT)
        (self.out / CONFIG_COPY).write_text(cfg.model_dump_json(indent=2) + "\n")

    # ------------------------------------------------------------ budget
    def _fraction(self) -> float:
        """How much of the budget is spent (the larger of the clock and step fractions)."""
        parts = []
        if self.cfg.max_minutes > 0:
            parts.append(self.elapsed / (self.cfg.max_minutes * 60))
        if self.cfg.max_steps > 0:
            parts.append(self.step / self.cfg.max_steps)
        return max(parts) if parts else 0.0

    def _set_lr(self) -> None:
        fraction = self._fraction()
        if self.cfg.lr_schedule == "linear":
            lr = self.cfg.lr * max(0.0, 1.0 - fraction)
        else:
            if not self.dropped and fraction >= self.cfg.lr_drop_at:
                self.dropped = True
                self.echo(f"step {self.step}: learning rate x{self.cfg.lr_drop_factor}")
            lr = self.cfg.lr * (self.cfg.lr_drop_factor if self.dropped else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # ------------------------------------------------------------ one step
    def _prompts(self, batch: Batch) -> list[TextPrompt]:
        if batch.task == "ground":
            return [self.model.expression_prompt(t.expression or "") for t in batch.targets]
        names = list(dict.fromkeys(n for t in batch.targets for n in t.names))
        tokens = dict(zip(names, self.model.encode_names(names), strict=True))
        return [GleeModel.category_prompt([tokens[n] for n in t.names]) for t in batch.targets]

    def _vocabulary(self) -> Callable[[Tensor], Tensor] | None:
        """Logits of projected queries against the whole vocabulary, encoded anew (the text tower trains)."""
        if self.cfg.loss.vocabulary <= 0:
            return None
        names = self.sampler.vocabulary()
        embeds = GleeModel.category_prompt(self.model.encode_names(names)).class_embeddings
        return lambda proj: self.model.predictor.similarity(proj[None], embeds[None])[0]

    def _images(self, batch: Batch) -> Tensor:
        pixels = torch.from_numpy(batch.images).permute(0, 3, 1, 2).float()
        images = self.model.normalize_and_pad(pixels)
        valid = torch.zeros(images.shape[0], 1, *images.shape[-2:], dtype=torch.bool)
        for b, (h, w) in enumerate(batch.hw):
            valid[b, :, :h, :w] = True
        return images * valid

    def _targets(self, batch: Batch) -> list[Targets]:
        out = []
        for t in batch.targets:
            boxes = torch.from_numpy(t.boxes)
            points, labels = mask_targets(
                torch.from_numpy(t.masks), boxes, self.cfg.loss.mask_points, self.generator
            )
            vocabulary = torch.from_numpy(t.vocabulary) if self.cfg.loss.vocabulary > 0 else None
            out.append(
                Targets(
                    torch.from_numpy(t.classes), boxes, points, labels, torch.from_numpy(t.tracks), vocabulary
                )
            )
        return out

    def train_step(self, batch: Batch) -> dict[str, float]:
        visual = None
        if batch.task == "visual":
            pos = torch.from_numpy(np.stack([t.prompt for t in batch.targets]))
            negs = [t.negative for t in batch.targets]
            neg = None
            if any(n is not None for n in negs):
                neg = torch.from_numpy(
                    np.stack(
                        [
                            n if n is not None else np.zeros_like(t.prompt)
                            for n, t in zip(negs, batch.targets, strict=True)
                        ]
                    )
                )
            visual = VisualPrompt(pos, [t.prompt_type for t in batch.targets], neg)
        targets = self._targets(batch)
        plan = None
        if batch.task in ("detect", "pairs") and self.cfg.denoising_queries > 0:
            plan = build_denoising(
                self.label_embed,
                [torch.from_numpy(t.labels) for t in batch.targets],
                [t.boxes for t in targets],
                self.glee_cfg.num_queries,
                self.cfg.denoising_queries,
                self.cfg.dn_label_noise,
                self.cfg.dn_box_noise,
                self.generator,
            )
        with self._autocast():
            out = self.model.run(
                self._images(batch),
                self._prompts(batch),
                visual,
                denoising=plan.queries if plan else None,
                return_aux=True,
            )
        if self.cfg.precision == "bfloat16":
            out = _float32(out)
        losses = self.criterion(
            out,
            targets,
            visual is not None,
            plan,
            pairs=batch.task == "pairs",
            vocabulary=self._vocabulary(),
            grounding=batch.task == "ground",
        )
        total = sum(losses.values())
        self._optimize(total)
        record = {k: float(v.detach()) for k, v in losses.items()}
        record["total"] = float(total.detach())
        return record

    def _autocast(self) -> torch.autocast:
        """The forward passes' precision: bf16 autocast on the model's device for "precision": "bfloat16"."""
        device = next(self.model.parameters()).device.type
        return torch.autocast(device, torch.bfloat16, enabled=self.cfg.precision == "bfloat16")

    def _optimize(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.cfg.grad_clip
            )
        self.optimizer.step()

    # ------------------------------------------------------------ loop
    def fit(self) -> dict[str, float]:
        """Train until the budget is spent; checkpoint periodically; export at the end."""
        cfg = self.cfg
        last_ckpt = time.perf_counter()
        draw, train = self._head_stage() if cfg.stage != "all" else (self._draw_task, self.train_step)
        ema: dict[str, float] = {}
        per_task: dict[str, float] = {}
        log = (self.out / LOG).open("a")
        try:
            while self._fraction() < 1.0:
                self._set_lr()
                task, batch = draw()
                t0 = time.perf_counter()
                record = train(batch)
                dt = time.perf_counter() - t0
                self.elapsed += dt
                self.step += 1
                if not math.isfinite(record["total"]):
                    raise FloatingPointError(f"non-finite loss at step {self.step}: {record}")
                for k, v in record.items():
                    ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
                per_task[task] = (
                    record["total"] if task not in per_task else 0.9 * per_task[task] + 0.1 * record["total"]
                )
                if self.step % cfg.log_every == 0:
                    entry = {
                        "step": self.step,
                        "minutes": round(self.elapsed / 60, 3),
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "sec_per_step": round(dt, 3),
                        "task": task,
                        "loss": {k: round(v, 4) for k, v in ema.items()},
                        "loss_by_task": {k: round(v, 3) for k, v in per_task.items()},
                    }
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    self.echo(
                        f"step {self.step} {self.elapsed / 60:.1f} min loss {ema['total']:.3f} "
                        f"({', '.join(f'{k} {v:.2f}' for k, v in sorted(per_task.items()))}) {dt:.2f} s/step"
                    )
                if time.perf_counter() - last_ckpt >= cfg.checkpoint_minutes * 60:
                    self.save()
                    last_ckpt = time.perf_counter()
        finally:
            log.close()
        if cfg.stage != "all":
            self._report_stage()
        self.save()
        self.export(self.out / EXPORT)
        return ema

    def _draw_task(self) -> tuple[str, Batch]:
        batch = self.sampler.sample()
        return batch.task, batch

    # ------------------------------------------------------------ head stages
    def _head_stage(
        self,
    ) -> tuple[Callable[[], tuple[str, HeadSamples]], Callable[[HeadSamples], dict[str, float]]]:
        """Collect the frozen model's outputs for the stage's task (counted in the clock), hold some out,
        and return the stage's (draw, train) pair: random batches of the rest, one AdamW step of the head
        on each."""
        cfg = self.cfg
        task = HEAD_STAGES[cfg.stage].task
        self.sampler.mix = cfg.tasks.model_copy(
            update={name: float(name == task) for name in ("detect", "ground", "visual", "pairs")}
        )
        samples = self._load_stage_samples() or self._collect_stage_samples()
        order = torch.randperm(len(samples), generator=self.generator)
        held = int(len(samples) * cfg.stage_holdout)
        self.stage_heldout, fit = samples.take(order[:held]), samples.take(order[held:])
        if isinstance(fit, GroundingSamples) and cfg.stage_mirrors:
            fit = fit.with_mirrors(self._encode_sentence)
        self.echo(f"{cfg.stage} stage: {len(fit)} samples to fit, {held} held out")

        def draw() -> tuple[str, HeadSamples]:
            return cfg.stage, fit.take(torch.randint(len(fit), (cfg.batch_size,), generator=self.generator))

        return draw, self.head_step

    def _collect_stage_samples(self) -> HeadSamples:
        """Run the frozen model on ``stage_samples`` samples of the stage's task (counted in the clock) and
        save them for a re-run."""
        cfg = self.cfg
        start = time.perf_counter()
        shown = [0]

        def progress(found: int) -> None:
            if found // 500 > shown[0] // 500 or found == cfg.stage_samples:
                minutes = (time.perf_counter() - start) / 60
                self.echo(f"{cfg.stage} samples {found}/{cfg.stage_samples} {minutes:.1f} min")
            shown[0] = found

        samples: HeadSamples
        if cfg.stage == "relation":
            samples = relation_stage.collect(
                self.model,
                self._grounding_batch,
                cfg.stage_samples,
                cfg.loss.refer_iou,
                progress,
                self._autocast,
            )
        else:
            samples = class_stage.collect(
                self.model, self._detection_batch, cfg.stage_samples, cfg.loss, progress, self._autocast
            )
        self.elapsed += time.perf_counter() - start
        fields = {f.name: getattr(samples, f.name) for f in dataclasses.fields(samples)}
        torch.save({"key": self._stage_key(), "samples": fields}, self.out / STAGE_SAMPLES)
        return samples

    def _load_stage_samples(self) -> HeadSamples | None:
        """The samples an earlier run of this stage collected, if its collection was the same as this one's:
        same sampling settings, data and frozen weights."""
        path = self.out / STAGE_SAMPLES
        if not path.exists():
            return None
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if saved["key"] != self._stage_key():
            self.echo(f"{path} was collected with other settings, data or weights: collecting anew")
            return None
        samples = HEAD_STAGES[self.cfg.stage].samples
        if set(saved["samples"]) != {f.name for f in dataclasses.fields(samples)}:
            self.echo(f"{path} holds other fields (an earlier version of the stage): collecting anew")
            return None
        self.echo(f"{self.cfg.stage} stage: {self.cfg.stage_samples} samples from {path} (collected earlier)")
        return samples(**saved["samples"])

    def _stage_key(self) -> str:
        """A digest of what a head stage's collected samples depend on."""
        cfg = self.cfg
        collection = {"model", "model_overrides", "seed", "size", "batch_size", "precision", "stage"}
        settings = cfg.model_dump(include=collection | {"stage_samples", "tasks", "loss"})
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
        digest.update(self.cache.boxes.tobytes())
        digest.update(json.dumps(self.cache.sentences).encode())  # the same scenes with other sentences
        head = HEAD_STAGES[cfg.stage]
        for name, tensor in sorted(self.model.state_dict().items()):
            if head.collects_with_head or not name.startswith(head.prefix):
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()

    def _grounding_batch(self) -> relation_stage.GroundingBatch:
        batch = self.sampler.sample()
        boxes = [torch.from_numpy(t.boxes) for t in batch.targets]
        extents = torch.from_numpy(batch.hw).float() / self.cfg.size
        return self._images(batch), [t.expression or "" for t in batch.targets], boxes, extents

    def _encode_sentence(self, sentence: str) -> Tensor:
        """A sentence's real tokens, encoded as the relation stage's collection encodes them."""
        with torch.no_grad(), self._autocast():
            return relation_stage.real_tokens(self.model.expression_prompt(sentence))

    def _detection_batch(self) -> tuple[Tensor, list[TextPrompt], list[Targets]]:
        batch = self.sampler.sample()
        return self._images(batch), self._prompts(batch), self._targets(batch)

    def head_step(self, samples: HeadSamples) -> dict[str, float]:
        """One AdamW step of the stage's head on cached samples."""
        if isinstance(samples, GroundingSamples):
            name, loss = "refer", relation_loss(self.model, samples)
        else:
            name, loss = "class", class_loss(self.model, samples, self.cfg.loss.focal_alpha)
        self._optimize(loss)
        return {name: float(loss.detach()), "total": float(loss.detach())}

    def _report_stage(self) -> None:
        held = self.stage_heldout
        with torch.no_grad():
            after = held.logits_after(self.model)
        if isinstance(held, GroundingSamples):
            before_after = f"top-1 {held.top1_accuracy(held.logits):.3f} -> {held.top1_accuracy(after):.3f}"
        else:
            alpha = self.cfg.loss.focal_alpha
            before_after = f"class loss {held.loss(held.logits, alpha):.4f} -> {held.loss(after, alpha):.4f}"
        self.echo(f"{self.cfg.stage} stage: held-out {before_after} ({len(held)} samples)")

    # ------------------------------------------------------------ state
    def save(self) -> Path:
        state = {
            "config": self.cfg.model_dump(),
            "model": self.model.state_dict(),
            "label_embed": self.label_embed.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "dropped": self.dropped,
            "sampler_rng": self.sampler.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
        }
        path = self.out / CHECKPOINT
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    def _load(self, path: Path) -> None:
        state = read_training_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.label_embed.load_state_dict(state["label_embed"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed, self.dropped = state["step"], state["elapsed"], state["dropped"]
        self.sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.generator.set_state(state["generator"])
        self.echo(f"resumed {path} at step {self.step} ({self.elapsed / 60:.1f} min)")

    def export(self, dst: Path) -> Path:
        """Inference weights (denoising embedding and optimizer left out) for ``GleePredictor.load``."""
        metadata = {
            "training": {"steps": self.step, "minutes": round(self.elapsed / 60, 2), "seed": self.cfg.seed}
        }
        return save_pretrained(self.model, dst, self.glee_cfg, dtype=self.cfg.export_dtype, metadata=metadata)


def freeze_except(model: nn.Module, prefixes: list[str]) -> None:
    """Train only the parameters whose names start with one of ``prefixes``; modules without any
    trainable parameter go to eval mode, so a frozen part computes exactly what it did before."""
    names = [n for n, _ in model.named_parameters()]
    unknown = [x for x in prefixes if not any(n.startswith(x) for n in names)]
    if unknown:
        raise ValueError(f"trainable prefixes match no parameter of the model: {unknown}")
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(tuple(prefixes)))
    for module in model.modules():
        if not any(p.requires_grad for p in module.parameters()):
            module.eval()


def _float32(value: Any) -> Any:
    """``value`` (tensors, dataclasses, lists, tuples, dicts of them) with bf16 tensors cast to fp32, so that
    matching and losses never run in reduced precision."""
    if isinstance(value, Tensor):
        return value.float() if value.dtype == torch.bfloat16 else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _float32(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **fields)
    if isinstance(value, list | tuple):
        return type(value)(_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _float32(v) for k, v in value.items()}
    return value


def read_training_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint's state, or a ``CheckpointError`` saying the file is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a glee training checkpoint: {load_failure(path, exc)}") from exc
    missing = [
        k for k in ("config", "model", "step", "elapsed") if not isinstance(state, dict) or k not in state
    ]
    if missing:
        raise CheckpointError(
            f"{path} is not a glee training checkpoint (RUN/{CHECKPOINT}): no {missing[0]!r}"
        )
    return state


def export_checkpoint(checkpoint: Path, dst: Path) -> Path:
    """Write the inference export of a training checkpoint without a data cache (``glee train-export``)."""
    state = read_training_checkpoint(checkpoint)
    cfg = TrainConfig.model_validate(state["config"])
    model = build_glee(cfg.glee_config())
    model.load_state_dict(state["model"])
    metadata = {
        "training": {"steps": state["step"], "minutes": round(state["elapsed"] / 60, 2), "seed": cfg.seed}
    }
    return save_pretrained(model, dst, cfg.glee_config(), dtype=cfg.export_dtype, metadata=metadata)
