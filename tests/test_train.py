"""Trainer tests on tiny generated data: the loss falls, checkpoints resume, the export loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from glee.data.readers import FileFormatError
from glee.data.videos import VideoConfig
from glee.data.writers import write_images, write_videos
from glee.model.mirror import flip_words
from glee.model.object_decoder import LayerPrediction
from glee.model.predictor import GleePredictor
from glee.train import trainer as trainer_module
from glee.train.cache import Cache, build_cache, load_or_build
from glee.train.config import LossWeights, TaskMix, TrainConfig
from glee.train.criterion import Criterion, Targets, matched_point_logits, point_features
from glee.train.denoising import build_denoising
from glee.train.losses import referring_loss, sample_at, track_contrastive_loss
from glee.train.matcher import match
from glee.train.relation_stage import GroundingSamples
from glee.train.tasks import TaskSampler, _describes
from glee.train.trainer import CHECKPOINT, EXPORT, STAGE_SAMPLES, Trainer

SIZE = 64


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("train-data")
    write_images(root / "images", 6, seed=3, workers=1, progress=False)
    write_videos(
        root / "videos", 1, seed=4, workers=1, config=VideoConfig(frames_min=8, frames_max=8), progress=False
    )
    return [root / "images", root / "videos"]


@pytest.fixture(scope="module")
def cache(data: list[Path]) -> Cache:
    return build_cache(data, SIZE, progress=False)


def _config(**kw: object) -> TrainConfig:
    base = dict(
        size=SIZE, batch_size=2, max_minutes=0, max_steps=2, denoising_queries=8, log_every=1, lr=1e-3
    )
    base["model_overrides"] = {"num_queries": 20, "dec_layers": 2, "enc_layers": 1, "template_size": 32}
    base.update(kw)
    return TrainConfig.model_validate(base)


def test_cache_round_trip(cache: Cache, tmp_path: Path) -> None:
    assert cache.num_frames == 6 + 8
    assert sorted(cache.categories) == sorted(
        ["circle", "square", "triangle", "star", "hexagon", "cross"][: len(cache.categories)]
    )
    k = int(cache.obj_start[0])
    mask = cache.mask(k)
    box = cache.boxes[k]
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - box[0]) <= 1.5 and abs(ys.max() + 1 - box[3]) <= 1.5
    cache.save(tmp_path / "c.npz")
    again = Cache.load(tmp_path / "c.npz")
    assert np.array_equal(again.masks, cache.masks) and again.sentences == cache.sentences


def test_a_saved_cache_is_reused_only_for_the_same_data_and_size(data: list[Path], tmp_path: Path) -> None:
    """Reusing a run's cache of other data or another size would silently train on the wrong frames."""
    path, said = tmp_path / "cache.npz", []
    images = load_or_build(data[:1], SIZE, path, progress=False, echo=said.append)
    again = load_or_build(data[:1], SIZE, path, progress=False, echo=said.append)
    assert (images.num_frames, again.num_frames, said) == (6, 6, [])
    videos = load_or_build(data[1:], SIZE, path, progress=False, echo=said.append)
    assert videos.num_frames == 8 and len(said) == 1 and "rebuilding" in said[0]
    assert load_or_build(data[1:], 2 * SIZE, path, progress=False, echo=said.append).size == 2 * SIZE
    assert len(said) == 2 and Cache.load(path).size == 2 * SIZE


@pytest.mark.parametrize(
    ("lists", "kind"),
    [(("images", "annotations", "categories"), "images"), (("videos", "categories"), "videos")],
)
def test_a_dataset_with_nothing_to_train_on_is_refused(
    lists: tuple[str, ...], kind: str, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "annotations.json").write_text(json.dumps({key: [] for key in lists}))
    with pytest.raises(FileFormatError, match=f"empty/annotations.json has no {kind}: nothing to train on"):
        build_cache([tmp_path / "empty"], SIZE, progress=False)


def test_colour_phrase_targets_only_name_matching_objects() -> None:
    assert _describes("red circle", ("circle", "red"))
    assert not _describes("red circle", ("circle", "blue"))
    assert not _describes("red circle", ("square", "red"))
    assert _describes("object", ("star", None)) and _describes("star", ("star", "green"))
    assert flip_words("the leftmost star", (True, False)) == "the rightmost star"
    assert flip_words("the topmost object", (True, True)) == "the bottommost object"


def test_sampler_batches_are_consistent(cache: Cache) -> None:
    sampler = TaskSampler(cache, TaskMix(), 4, np.random.default_rng(0))
    vocabulary = sampler.vocabulary()
    seen = set()
    for _ in range(30):
        batch = sampler.sample()
        seen.add(batch.task)
        assert batch.images.shape == (4, SIZE, SIZE, 3)
        for t in batch.targets:
            assert len(t.boxes) == len(t.masks) == len(t.classes) == len(t.labels) == len(t.vocabulary)
            # Every target names its own shape and "object" in the fixed vocabulary, plus at most its phrase.
            assert t.vocabulary.shape[1] == len(vocabulary)
            for row, label in zip(t.vocabulary, t.labels, strict=True):
                named = {vocabulary[i] for i in np.flatnonzero(row)}
                shape = sampler.shapes[label]
                assert {shape, "object"} <= named and len(named - {shape, "object"}) <= 1
                assert all(n.endswith(f" {shape}") for n in named - {shape, "object"})
            if batch.task == "detect":
                assert t.classes.shape[1] == len(t.names) and (t.classes.sum(1) > 0).all()
            if batch.task == "visual":
                assert len(t.boxes) == 1 and t.prompt is not None and t.prompt.any()
                # The prompt lies on the prompted object (points and scribbles are inside its mask).
                if t.prompt_type in ("scribble", "mask"):
                    assert (t.prompt & t.masks[0]).sum() > 0
            if batch.task == "ground":
                assert t.expression and len(t.boxes) == 1
        if batch.task == "pairs":
            assert all(len(t.tracks) == 0 or (t.tracks >= 0).all() for t in batch.targets)
    assert seen == {"detect", "ground", "visual", "pairs"}


def test_matcher_finds_the_identity() -> None:
    boxes = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.2, 0.4]])
    logits = torch.tensor([[5.0, -5.0], [-5.0, 5.0], [-5.0, -5.0]])
    classes = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    rows, cols = match(logits, boxes, classes, boxes[[1, 0]], w_cls=4, w_l1=5, w_giou=2)
    assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {0: 1, 1: 0}


def test_track_loss_prefers_matching_embeddings() -> None:
    keys = torch.eye(3)
    ids = torch.tensor([1, 2, 3])
    good, n = track_contrastive_loss(keys, ids, torch.eye(3), ids, 0.1)
    bad, _ = track_contrastive_loss(keys, ids, torch.eye(3)[[1, 2, 0]], ids, 0.1)
    assert n == 3 and good < 0.01 < bad


@pytest.mark.parametrize(
    ("q", "j"),
    [([5, 2, 9, 7], [2, 0, 3, 1]), ([10, 11, 12, 13, 14, 15, 16, 17], [0, 1, 2, 3] * 2), ([1, 2], [3, 0])],
    ids=["hungarian", "denoising-groups", "some-targets"],
)
def test_point_logits_equal_sampling_the_full_mask_logits(q: list[int], j: list[int]) -> None:
    """The trainer's mask loss reads features at the points instead of whole logit maps: same values."""
    g = torch.Generator().manual_seed(0)
    features, embeds = torch.randn(16, 20, 24, generator=g), torch.randn(30, 16, generator=g)
    points = torch.rand(4, 50, 2, generator=g)
    qt, jt = torch.tensor(q), torch.tensor(j)
    logits, rows = matched_point_logits(embeds, qt, jt, point_features(features, points))
    expected = sample_at(torch.einsum("qc,chw->qhw", embeds[qt], features), points[jt])
    # rows may come reordered (target-major): compare each target's rows as a set
    for t in set(j):
        got = logits[rows == t]
        want = expected[jt == t]
        assert got.shape == want.shape
        assert torch.allclose(got.sort(0).values, want.sort(0).values, atol=1e-5)


def test_denoising_groups_cannot_see_each_other() -> None:
    embed = torch.nn.Embedding(6, 16)
    boxes = [torch.tensor([[0.5, 0.5, 0.2, 0.2]]), torch.tensor([[0.3, 0.3, 0.1, 0.1], [0.6, 0.6, 0.2, 0.3]])]
    plan = build_denoising(embed, [torch.tensor([1]), torch.tensor([2, 3])], boxes, 10, 8, 0.0, 1.0)
    assert plan is not None and plan.groups == 2 and plan.max_objects == 2
    pad = plan.groups * 2 * plan.max_objects
    mask = plan.queries.attn_mask
    assert mask.shape == (pad + 10, pad + 10)
    assert mask[pad:, :pad].all() and not mask[:pad, pad:].any()
    assert mask[0, 4] and not mask[0, 3]
    assert len(plan.positives[1][0]) == 4 and len(plan.rows[1]) == 8


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_loss_decreases_on_a_fixed_batch(data: list[Path], tmp_path: Path, precision: str) -> None:
    trainer = Trainer(_config(precision=precision), data, tmp_path, echo=lambda s: None)
    only = ("detect", "all_shapes")
    kinds = ("ground", "visual", "pairs", "some_shapes", "phrases", "all_phrases", "object", "mixed")
    trainer.sampler.mix = TaskMix(**{k: 1.0 for k in only}, **{k: 0.0 for k in kinds})
    batch = trainer.sampler.sample()
    losses = [trainer.train_step(batch)["total"] for _ in range(8)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0]
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # autocast never casts weights


def test_bfloat16_changes_the_forward_pass_by_rounding_only(data: list[Path], tmp_path: Path) -> None:
    """Same seed, same batch: bf16 must give a different first loss (autocast is really on) within a few
    percent of fp32 (only rounding differs)."""
    first = {}
    for precision in ("float32", "bfloat16"):
        trainer = Trainer(_config(precision=precision), data, tmp_path / precision, echo=lambda s: None)
        first[precision] = trainer.train_step(trainer.sampler.sample())["total"]
    assert first["bfloat16"] != first["float32"]
    assert abs(first["bfloat16"] - first["float32"]) < 0.05 * first["float32"], first


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_warns_where_the_cpu_would_emulate_it(
    data: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    for precision in ("float32", "bfloat16"):
        said: list[str] = []
        Trainer(_config(precision=precision), data, tmp_path / precision, echo=said.append)
        warned = any("without native bf16" in line for line in said)
        assert warned == (precision == "bfloat16" and not native), said


@pytest.mark.parametrize("vocabulary", [0.0, 2.0])
def test_every_task_trains_one_step(data: list[Path], tmp_path: Path, vocabulary: float) -> None:
    trainer = Trainer(_config(loss={"vocabulary": vocabulary}), data, tmp_path, echo=lambda s: None)
    for task in ("detect", "ground", "visual", "pairs"):
        trainer.sampler.mix = TaskMix(
            **{k: float(k == task) for k in ("detect", "ground", "visual", "pairs")}
        )
        batch = trainer.sampler.sample()
        record = trainer.train_step(batch)
        assert np.isfinite(record["total"])
        assert ("conf" in record) == (task == "visual")
        assert ("track" in record) == (task == "pairs")
        assert ("vocab" in record) == (vocabulary > 0)


def test_trainable_prefixes_train_only_those_parameters(data: list[Path], tmp_path: Path) -> None:
    """A new head trained on a frozen model: only its parameters move, batch-norm statistics stay."""
    overrides = {**_config().model_overrides, "ground_relation_layers": 1}
    head = "predictor.ground_relation"
    cfg = _config(model_overrides=overrides, trainable=[head])
    trainer = Trainer(cfg, data, tmp_path, echo=lambda s: None)
    trainer.sampler.mix = TaskMix(detect=0.0, ground=1.0, visual=0.0, pairs=0.0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert any("running_mean" in k for k in before)
    for _ in range(2):
        trainer.train_step(trainer.sampler.sample())
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(head) for k in changed), sorted(changed)[:5]
    with pytest.raises(ValueError, match="no parameter"):
        Trainer(_config(trainable=["predictor.no_such_head"]), data, tmp_path / "x", echo=lambda s: None)


def _fit_head_stage(
    data: list[Path], tmp_path: Path, stage: str, overrides: dict[str, object]
) -> tuple[Trainer, list[str]]:
    """Train a one-step base model, then run ``stage`` on it (12 samples, 3 held out, 4 steps) and check
    that only the stage's head moved. Returns the stage's trainer and its printed lines."""
    base = Trainer(_config(max_steps=1), data, tmp_path / "base", echo=lambda s: None)
    base.fit()
    cfg = _config(
        model_overrides={**_config().model_overrides, **overrides},
        stage=stage,
        stage_samples=12,
        stage_holdout=0.25,
        max_steps=4,
    )
    lines: list[str] = []
    trainer = Trainer(cfg, data, tmp_path / stage, init=tmp_path / "base" / EXPORT, echo=lines.append)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    head = "predictor.ground_relation." if stage == "relation" else "predictor.class_refine."
    assert changed and all(k.startswith(head) for k in changed), sorted(changed)[:5]
    assert any("9 samples to fit, 3 held out" in line for line in lines), lines
    return trainer, lines


def test_relation_stage_trains_only_the_head_on_cached_samples(data: list[Path], tmp_path: Path) -> None:
    """The relation stage starts from a finished model, moves only the relation head, reports its held-out
    top-1 accuracy and exports a model whose grounding uses the head. Started from a model that has a
    trained head, it caches the logits before that head, as it would without one."""
    first, lines = _fit_head_stage(data, tmp_path, "relation", {"ground_relation_layers": 1})
    assert any(line.startswith("relation stage: held-out top-1") for line in lines), lines
    exported = tmp_path / "relation" / EXPORT
    assert GleePredictor.load(exported).model.predictor.ground_relation is not None
    held = first.stage_heldout
    with torch.no_grad():
        assert not torch.allclose(held.logits_after(first.model), held.logits)
    again = Trainer(first.cfg, data, tmp_path / "again", init=exported, echo=lambda s: None)
    again.fit()
    assert torch.equal(again.stage_heldout.logits, held.logits)
    with pytest.raises(ValueError, match="ground_relation_layers"):
        Trainer(_config(stage="relation"), data, tmp_path / "x", echo=lambda s: None)


def test_relation_stage_reuses_its_samples_and_fits_their_mirrors(data: list[Path], tmp_path: Path) -> None:
    """A re-run of the stage in the same directory fits the samples the first run collected (the same
    held-out ones), with their mirror images when asked; other collection settings collect anew."""
    first, _ = _fit_head_stage(data, tmp_path, "relation", {"ground_relation_layers": 1})
    lines: list[str] = []
    cfg = first.cfg.model_copy(update={"stage_mirrors": True})
    again = Trainer(cfg, data, tmp_path / "relation", init=tmp_path / "base" / EXPORT, echo=lines.append)
    again.fit()
    assert any("12 samples from" in line and "collected earlier" in line for line in lines), lines
    assert any("36 samples to fit, 3 held out" in line for line in lines), lines
    assert torch.equal(again.stage_heldout.normed, first.stage_heldout.normed)
    assert again.stage_heldout.sentences == first.stage_heldout.sentences

    # A file of an earlier version of the stage (other fields) is collected anew, not misread.
    saved = torch.load(tmp_path / "relation" / STAGE_SAMPLES, weights_only=False)
    del saved["samples"]["mask_area"]
    torch.save(saved, tmp_path / "relation" / STAGE_SAMPLES)
    lines.clear()
    Trainer(first.cfg, data, tmp_path / "relation", init=tmp_path / "base" / EXPORT, echo=lines.append).fit()
    assert any("holds other fields" in line for line in lines), lines

    # The same scenes with other sentences (e.g. written by `glee data synth --no-ref-margins`).
    cache = Cache.load(tmp_path / "relation" / "cache.npz")
    cache.sentences = [[s.upper() for s in sentences] for sentences in cache.sentences]
    cache.save(tmp_path / "relation" / "cache.npz")
    lines.clear()
    Trainer(first.cfg, data, tmp_path / "relation", init=tmp_path / "base" / EXPORT, echo=lines.append).fit()
    assert any("collecting anew" in line for line in lines), lines

    lines.clear()
    cfg = first.cfg.model_copy(update={"stage_samples": 8})
    Trainer(cfg, data, tmp_path / "relation", init=tmp_path / "base" / EXPORT, echo=lines.append).fit()
    assert any("collecting anew" in line for line in lines), lines
    assert any("6 samples to fit, 2 held out" in line for line in lines), lines


def test_relation_sample_mirrors_flip_boxes_inside_the_image_and_swap_direction_words() -> None:
    """A mirror keeps the referred query (positives, logits, queries, mask areas) and mirrors every box
    about its own image's extent; the sentence's direction words swap and it is encoded again."""
    n, q, d = 2, 3, 4
    boxes = torch.rand(n, q, 4)
    samples = GroundingSamples(
        normed=torch.randn(n, q, d).half(),
        boxes=boxes,
        mask_area=torch.rand(n, q),
        logits=torch.randn(n, q),
        tokens=torch.zeros(n, 5, d).half(),
        token_mask=torch.ones(n, 5, dtype=torch.bool),
        positive=torch.tensor([[True, False, False], [False, False, True]]),
        extent=torch.tensor([[0.5, 1.0], [1.0, 0.75]]),  # (h, w)
        sentences=["the leftmost star on the left", "the topmost red circle"],
    )

    def encode(sentence: str) -> Tensor:
        return torch.full((len(sentence.split()), d), float(len(sentence)))

    lr = samples.mirrored((True, False), encode)
    assert lr.sentences == ["the rightmost star on the right", "the topmost red circle"]
    assert torch.allclose(lr.boxes[0, :, 0], 1.0 - boxes[0, :, 0])
    assert torch.allclose(lr.boxes[1, :, 0], 0.75 - boxes[1, :, 0])
    assert torch.equal(lr.boxes[..., 1:], boxes[..., 1:])
    assert torch.equal(lr.tokens[1, :4], encode("the topmost red circle").half())
    assert lr.token_mask.sum(1).tolist() == [6, 4]
    for field in ("normed", "mask_area", "logits", "positive"):
        assert torch.equal(getattr(lr, field), getattr(samples, field))

    tb = samples.mirrored((False, True), encode)
    assert tb.sentences == ["the leftmost star on the left", "the bottommost red circle"]
    assert torch.allclose(tb.boxes[0, :, 1], 0.5 - boxes[0, :, 1])
    assert torch.allclose(tb.mirrored((False, True), encode).boxes, boxes)

    every = samples.with_mirrors(encode)
    assert len(every) == 4 * n and every.tokens.shape[1] == 6
    assert every.sentences[:2] == samples.sentences
    assert every.sentences[6:] == ["the rightmost star on the right", "the bottommost red circle"]
    assert torch.equal(every.take(torch.tensor([1])).boxes, boxes[1:])


def test_relation_samples_follow_the_precision_setting(data: list[Path], tmp_path: Path) -> None:
    """With "precision": "bfloat16" the stage's forwards run under autocast: the cached logits differ from
    fp32 by rounding only (a few percent in this barely trained model) and are stored in fp32."""
    overrides = {**_config().model_overrides, "ground_relation_layers": 1}
    logits = {}
    for precision in ("float32", "bfloat16"):
        cfg = _config(
            model_overrides=overrides,
            stage="relation",
            stage_samples=8,
            stage_holdout=0.5,
            max_steps=1,
            precision=precision,
            # Any overlap makes a positive query, so both runs keep the same samples.
            loss={"refer_iou": 1e-6},
        )
        trainer = Trainer(cfg, data, tmp_path / precision, echo=lambda s: None)
        trainer.fit()
        held = trainer.stage_heldout
        assert held.logits.dtype == held.boxes.dtype == torch.float32
        logits[precision] = held.logits
    full, half = logits["float32"], logits["bfloat16"]
    assert not torch.equal(full, half)
    error = (full - half).abs().mean()
    assert error < 0.1 * full.abs().mean(), (error, full.abs().mean())  # measured: 3.4 %


@pytest.mark.parametrize("shape", [0, 4])
def test_class_stage_trains_only_the_refinement_on_matched_detection_samples(
    data: list[Path], tmp_path: Path, shape: int
) -> None:
    """The class stage starts from a finished model, caches detection samples whose targets are the names
    of the matched objects (with their mask crops when the refinement reads them), moves only the class
    refinement (which can fit the samples), reports its held-out loss and exports a model that uses it."""
    overrides = {"class_refine": True, "class_refine_shape": shape}
    trainer, lines = _fit_head_stage(data, tmp_path, "class", overrides)
    assert any(line.startswith("class stage: held-out class loss") for line in lines), lines
    crops = trainer.stage_heldout.shape
    assert crops.shape[-1] == shape * shape and (crops.shape[-1] == 0 or 0 <= crops.min() <= crops.max() <= 1)

    held = trainer.stage_heldout
    # Targets are names on the sample's own list, and matched queries have some.
    assert not (held.target & ~held.class_mask[:, None, :]).any()
    assert held.target.any(-1).sum() > 0
    # The head can fit samples: 30 more steps on the held-out ones lower their loss.
    alpha = trainer.cfg.loss.focal_alpha
    with torch.no_grad():
        start = float(held.loss(held.logits_after(trainer.model), alpha))
    for _ in range(30):
        trainer.head_step(held)
    with torch.no_grad():
        assert float(held.loss(held.logits_after(trainer.model), alpha)) < 0.8 * start

    exported = GleePredictor.load(tmp_path / "class" / EXPORT)
    assert exported.model.predictor.class_refine is not None
    with pytest.raises(ValueError, match="class_refine"):
        Trainer(_config(stage="class"), data, tmp_path / "x", echo=lambda s: None)


def test_class_stage_collects_anew_from_another_starting_head(data: list[Path], tmp_path: Path) -> None:
    """The class stage's targets come from matching the frozen queries by their refined logits, so a re-run
    from the same model reuses its samples and a re-run from another class refinement collects anew."""
    first, _ = _fit_head_stage(data, tmp_path, "class", {"class_refine": True, "class_refine_shape": 4})
    fitted = tmp_path / "fitted"
    shutil.copytree(tmp_path / "class" / EXPORT, fitted)
    for init, said in ((tmp_path / "base" / EXPORT, "collected earlier"), (fitted, "collecting anew")):
        lines: list[str] = []
        Trainer(first.cfg, data, tmp_path / "class", init=init, echo=lines.append).fit()
        assert any(said in line for line in lines), lines


def test_referring_loss_is_the_softmax_mass_missing_from_the_positives() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    positive = torch.tensor([False, True, True, False])
    mass = torch.softmax(logits, 0)[1:3].sum()
    torch.testing.assert_close(referring_loss(logits, positive), -mass.log())
    # Lower when a positive is the top-1 than when a negative outscores it; one value per row.
    swapped = torch.tensor([1.0, 2.0, 0.0, -1.0])
    both = referring_loss(torch.stack([logits, swapped]), torch.stack([positive, positive]))
    assert both.shape == (2,) and both[1] < both[0]


def test_grounding_steps_add_the_referring_loss_when_asked(data: list[Path], tmp_path: Path) -> None:
    for refer in (0.0, 1.0):
        trainer = Trainer(_config(loss={"refer": refer}), data, tmp_path / str(refer), echo=lambda s: None)
        for task in ("ground", "detect"):
            trainer.sampler.mix = TaskMix(
                **{k: float(k == task) for k in ("detect", "ground", "visual", "pairs")}
            )
            record = trainer.train_step(trainer.sampler.sample())
            assert ("refer" in record) == (refer > 0 and task == "ground"), (refer, task, record)


def test_vocabulary_loss_prefers_the_right_name() -> None:
    """Matched queries pointing at their object's names cost less than ones pointing at other names."""
    names = torch.eye(4)
    criterion = Criterion(LossWeights(vocabulary=1.0))
    target = Targets(
        torch.ones(1, 1),
        torch.zeros(1, 4),
        torch.zeros(1, 1, 2),
        torch.zeros(1, 1),
        torch.zeros(1),
        vocabulary=torch.tensor([[1.0, 0.0, 1.0, 0.0]]),
    )

    def loss(query: Tensor) -> float:
        proj = torch.zeros(1, 3, 4)
        proj[0, 2] = query
        pred = LayerPrediction(torch.zeros(1, 3, 1), torch.zeros(1, 3, 1), proj, torch.zeros(1, 3, 4), proj)
        indices = [(torch.tensor([2]), torch.tensor([0]))]
        return float(criterion._vocabulary(pred, [target], indices, lambda p: 8 * p @ names.T - 4, 1))

    right, wrong = loss(names[0] + names[2]), loss(names[1] + names[3])
    assert right < 0.01 < wrong


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("linear", [1e-3, 7.5e-4, 5e-4, 2.5e-4]), ("step", [1e-3, 1e-3, 1e-4, 1e-4])],
)
def test_learning_rate_schedules(
    data: list[Path], tmp_path: Path, schedule: str, expected: list[float]
) -> None:
    cfg = _config(max_steps=4, lr_schedule=schedule, lr_drop_at=0.5, lr_drop_factor=0.1)
    Trainer(cfg, data, tmp_path, echo=lambda s: None).fit()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["lr"] for e in log] == pytest.approx(expected)


def test_a_run_needs_a_budget() -> None:
    """Without one the run would never end, nor drop or decay its learning rate."""
    for schedule in ("step", "linear"):
        with pytest.raises(ValueError, match="max_minutes and max_steps are both 0"):
            _config(max_steps=0, lr_schedule=schedule)


def test_checkpoint_resumes_and_exports(data: list[Path], tmp_path: Path) -> None:
    first = Trainer(_config(max_steps=2), data, tmp_path, echo=lambda s: None)
    first.fit()
    assert (tmp_path / CHECKPOINT).exists() and first.step == 2
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2]

    resumed = Trainer(_config(max_steps=3), data, tmp_path, resume=True, echo=lambda s: None)
    assert resumed.step == 2
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    resumed.fit()
    assert resumed.step == 3

    predictor = GleePredictor.load(tmp_path / EXPORT)
    meta = json.loads((tmp_path / EXPORT / "config.json").read_text())["metadata"]
    assert meta["dtype"] == "float16" and meta["training"]["steps"] == 3
    image = np.full((48, 64, 3), 128, np.uint8)
    result = predictor.detect(image, ["circle", "red square"], score_threshold=0.0, max_detections=5)
    assert len(result) == 5 and result.masks.shape[1:] == (48, 64)
