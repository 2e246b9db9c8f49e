"""The synthetic shapes generator, its writers, readers, packed cache, prompts and CLI.

Spec invariants are checked on generated scenes with independent code (own box, visibility and
referring-expression logic), so a bug in the generator's helpers cannot hide itself.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy import ndimage
from typer.testing import CliRunner

from glee.data import prompts
from glee.data.expressions import Candidate, phrases
from glee.data.geometry import Shape, paste, rasterize
from glee.data.masks import decode_segmentation, encode_rle
from glee.data.readers import CocoDataset, YtvisDataset
from glee.data.render import sample_background
from glee.data.scenes import SceneConfig, generate_scene
from glee.data.spec import COLOURS, SHAPES
from glee.data.videos import VideoConfig, generate_video
from glee.data.writers import write_images, write_videos

N_SCENES = 50
N_VIDEOS = 8


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(123, i) for i in range(N_SCENES)]


@pytest.fixture(scope="module")
def videos():
    return [generate_video(321, i) for i in range(N_VIDEOS)]


@pytest.fixture(scope="module")
def image_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("images")
    summary = write_images(out, 6, seed=5, workers=1, progress=False)
    return out, summary


def _box(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


# ---------------------------------------------------------------- independent expression resolver
_SUPERLATIVE = {
    "largest": ("area", max),
    "biggest": ("area", max),
    "smallest": ("area", min),
    "leftmost": ("cx", min),
    "rightmost": ("cx", max),
    "topmost": ("cy", min),
    "bottommost": ("cy", max),
}
_C = "|".join(COLOURS)
_S = "|".join(SHAPES)


def resolve(sentence, objs):
    """Indices of `objs` ({shape, colour, area, box}) that a literal reading of `sentence` picks."""
    assert sentence == sentence.lower()
    s = sentence.removeprefix("the ")
    feats = [
        {"area": o["area"], "cx": (o["box"][0] + o["box"][2]) / 2, "cy": (o["box"][1] + o["box"][3]) / 2}
        for o in objs
    ]
    if m := re.fullmatch(f"({_C}) ({_S})", s):
        return [i for i, o in enumerate(objs) if (o["colour"], o["shape"]) == m.groups()]
    if m := re.fullmatch(f"({_S})", s):
        return [i for i, o in enumerate(objs) if o["shape"] == m[1]]
    if m := re.fullmatch(f"({_C}) (object|shape)", s):
        return [i for i, o in enumerate(objs) if o["colour"] == m[1]]
    if m := re.fullmatch(f"({'|'.join(_SUPERLATIVE)}) ({_S}|object)", s):
        key, pick = _SUPERLATIVE[m[1]]
        group = [i for i, o in enumerate(objs) if m[2] in ("object", o["shape"])]
        best = pick(feats[i][key] for i in group)
        return [i for i in group if feats[i][key] == best]
    if m := re.fullmatch(f"({_S}) on the (left|right)", s):
        group = [i for i, o in enumerate(objs) if o["shape"] == m[1]]
        if len(group) != 2:
            return []
        a, b = sorted(group, key=lambda i: feats[i]["cx"])
        return [a] if m[2] == "left" else [b]
    raise AssertionError(f"sentence outside the spec's vocabulary: {sentence!r}")


def _kind(sentence):
    s = sentence.removeprefix("the ")
    words = s.split()
    if words[0] in _SUPERLATIVE:
        return words[0]
    if s.endswith(("on the left", "on the right")):
        return "on the " + words[-1]
    if words[-1] in ("object", "shape"):
        return f"<colour> {words[-1]}"
    return "<colour> <shape>" if len(words) == 2 else "<shape>"


# ---------------------------------------------------------------- images
def test_scene_invariants(scenes):
    counts = _check_scene_invariants(scenes)
    assert len(set(counts)) >= 5  # object counts really vary


def _check_scene_invariants(scenes):
    """Assert the spec's rules for every scene; return each scene's object count."""
    counts = []
    for scene in scenes:
        h, w, c = scene.image.shape
        assert c == 3 and scene.image.dtype == np.uint8
        assert 256 <= h <= 512 and 256 <= w <= 512
        assert 1 <= len(scene.objects) <= 8
        counts.append(len(scene.objects))
        covered = np.zeros((h, w), bool)
        for obj in reversed(scene.objects):  # top first: what is above hides what is below
            whole = rasterize(obj.shape, 4 if scene.attributes["antialias"] else 1).mask
            assert whole.sum() == obj.full_mask.sum()  # the whole shape lies inside the image
            x0, y0, x1, y1 = _box(obj.full_mask)
            assert 20 <= x1 - x0 <= 160 and 20 <= y1 - y0 <= 160
            np.testing.assert_array_equal(obj.visible, obj.full_mask & ~covered)
            covered |= obj.full_mask
            assert obj.visible.sum() >= 0.4 * obj.full_mask.sum()
            assert obj.box == _box(obj.visible)
            interior = ndimage.binary_erosion(obj.visible, iterations=3)
            if interior.sum() >= 100:
                mean = scene.image[interior].mean(0)
                assert np.all(np.abs(mean - COLOURS[obj.look.colour]) <= 25 + 4), (obj.look, mean)
    return counts


def test_shape_geometry():
    """Star and cross proportions and the equilateral triangle, measured on large rasters."""
    tri = rasterize(Shape("triangle", 200.0, 200.0, 100.0, 0.0)).mask
    x0, y0, x1, y1 = _box(tri)
    assert abs((x1 - x0) - 100 * math.sqrt(3)) <= 2 and abs((y1 - y0) - 150) <= 2
    cross = rasterize(Shape("cross", 200.0, 200.0, 100.0, 0.0, ratio=0.3)).mask
    assert abs(cross[cross.shape[0] // 2 - 80].sum() - 60) <= 2  # arm width = 0.3 of the 200 px size
    star = rasterize(Shape("star", 200.0, 200.0, 100.0, 0.0, ratio=0.4)).mask
    area = 5 * 100 * 40 * math.sin(math.radians(36))  # 10 triangles of sides R, r at 36 degrees
    assert abs(star.sum() - area) / area < 0.02
    sq = rasterize(Shape("square", 50.0, 50.0, 20.0 * math.sqrt(2), math.radians(45))).mask
    assert abs(sq.sum() - 1600) < 40


def test_backgrounds_are_muted():
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(60):
        bg, kind = sample_background(rng, 48, 64)
        kinds.add(kind)
        px = np.rint(bg).reshape(-1, 3)
        mx, mn = px.max(1), px.min(1)
        assert np.all((mx - mn) / mx <= 0.35)
        assert np.all((mx >= 0.25 * 255) & (mx <= 0.85 * 255))
    assert kinds == {"solid", "gradient", "noise"}


def test_expressions_identify_exactly_their_object(scenes):
    kinds = set()
    with_the = without_the = 0
    for scene in scenes:
        objs = [
            {"shape": o.shape.kind, "colour": o.look.colour, "area": o.area, "box": o.box}
            for o in scene.objects
        ]
        assert len(scene.expressions) == len(objs)
        for target, sentences in enumerate(scene.expressions):
            for sentence in sentences:
                assert resolve(sentence, objs) == [target], (sentence, objs)
                kinds.add(_kind(sentence))
                with_the += sentence.startswith("the ")
                without_the += not sentence.startswith("the ")
    expected = {
        "<colour> <shape>",
        "<shape>",
        "<colour> object",
        "<colour> shape",
        "on the left",
        "on the right",
    }
    assert expected | set(_SUPERLATIVE) <= kinds
    assert with_the > without_the > 0
    referred = sum(bool(e) for scene in scenes for e in scene.expressions)
    assert referred >= 0.9 * sum(len(scene.objects) for scene in scenes)


def test_comparatives_need_a_clear_margin():
    def cand(shape, area, x, colour="red"):
        return Candidate(shape, colour, area, area, (x, 10, x + 20, 30))

    big, close, far = cand("circle", 130, 0), cand("circle", 110, 6), cand("circle", 100, 100, "blue")
    assert "largest circle" in phrases(big, [far])
    assert "largest circle" not in phrases(big, [close, far])  # 130 < 1.2 x 110
    assert "leftmost object" not in phrases(big, [close])  # box centres only 6 px apart
    assert "circle on the left" in phrases(big, [far])
    hidden = Candidate("circle", "blue", 50, 200, (100, 10, 120, 30), annotated=False)
    assert "circle on the left" not in phrases(big, [hidden])  # the pair must be two annotated objects
    assert "red circle" not in phrases(big, [close]) and "blue circle" in phrases(far, [big, close])
    # Without margins the literal reading decides: larger visible area, box centre further left.
    assert "largest circle" in phrases(big, [close, far], margins=False)
    assert "leftmost object" in phrases(big, [close], margins=False)
    assert "circle on the right" in phrases(close, [big], margins=False)
    twin = cand("circle", 130, 0, "blue")  # same area and centre: neither reading is strict
    assert not {"largest circle", "leftmost circle"} & set(phrases(big, [twin], margins=False))


def test_without_margins_comparatives_hold_wherever_the_literal_reading_is_strict(scenes):
    """``--no-ref-margins``: each sentence still names exactly its object by the independent resolver's
    literal reading, every sentence with margins is kept, and close calls are added."""
    added = 0
    for scene in scenes:
        objs = [
            {"shape": o.shape.kind, "colour": o.look.colour, "area": o.area, "box": o.box}
            for o in scene.objects
        ]
        candidates = [o.candidate() for o in scene.objects]
        for target, candidate in enumerate(candidates):
            others = candidates[:target] + candidates[target + 1 :]
            loose, strict = phrases(candidate, others, margins=False), phrases(candidate, others)
            for phrase in loose:
                assert resolve(phrase, objs) == [target], (phrase, objs)
            assert set(strict) <= set(loose)
            added += len(loose) - len(strict)
    assert added > 0


def test_same_seed_gives_identical_files(tmp_path, image_dataset):
    out, _ = image_dataset
    again = tmp_path / "again"
    write_images(again, 6, seed=5, workers=2, progress=False)  # another worker layout, same bytes
    assert (again / "annotations.json").read_bytes() == (out / "annotations.json").read_bytes()
    for png in sorted((out / "images").iterdir()):
        assert (again / "images" / png.name).read_bytes() == png.read_bytes()
    other = tmp_path / "other"
    write_images(other, 2, seed=6, workers=1, progress=False)
    assert (other / "images" / "000000.png").read_bytes() != (out / "images" / "000000.png").read_bytes()


def test_an_existing_dataset_is_refused_or_replaced_whole(tmp_path):
    out = tmp_path / "data"
    write_images(out, 3, seed=5, workers=1, progress=False)
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        write_images(out, 2, seed=6, workers=1, progress=False)
    assert len(list((out / "images").iterdir())) == 3  # the refused call touched nothing
    write_images(out, 2, seed=6, workers=1, progress=False, overwrite=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png"]
    assert json.loads((out / "annotations.json").read_text())["info"]["seed"] == 6
    write_videos(out, 1, seed=7, workers=1, progress=False, overwrite=True)  # no image of the old kind stays
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json", "frames"]


def test_coco_files_round_trip(image_dataset):
    out, summary = image_dataset
    data = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(SHAPES)
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4, 5, 6]
    assert summary.objects == len(data["annotations"])
    dataset = CocoDataset(out / "annotations.json")
    assert len(dataset) == 6
    for i in range(len(dataset)):
        sample = dataset[i]
        scene = generate_scene(5, i)
        np.testing.assert_array_equal(sample.image, scene.image)
        assert sample.category_names == [o.shape.kind for o in scene.objects]
        assert sample.colours == [o.look.colour for o in scene.objects]
        assert sample.sentences == scene.expressions
        for k, obj in enumerate(scene.objects):
            np.testing.assert_array_equal(sample.masks[k], obj.visible)
            np.testing.assert_array_equal(sample.boxes[k], _box(obj.visible))
    for ann in data["annotations"]:
        assert isinstance(ann["segmentation"]["counts"], str) and ann["iscrowd"] == 0
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        assert mask_utils.toBbox(rle).tolist() == ann["bbox"]
        assert int(mask_utils.area(rle)) == ann["area"]
    ann_ids = {a["id"] for a in data["annotations"]}
    assert data["refs"] and all(r["ann_id"] in ann_ids and r["sentences"][0]["sent"] for r in data["refs"])


def test_segmentation_decoding_accepts_every_coco_form():
    mask = np.zeros((20, 30), bool)
    mask[5:10, 4:12] = True
    np.testing.assert_array_equal(decode_segmentation(encode_rle(mask), 20, 30), mask)
    uncompressed = {"size": [20, 30], "counts": [4 * 20 + 5, 5] + [15, 5] * 7 + [20 * 30 - 12 * 20 + 10]}
    np.testing.assert_array_equal(decode_segmentation(uncompressed, 20, 30), mask)
    poly = [[4.0, 5.0, 12.0, 5.0, 12.0, 10.0, 4.0, 10.0]]
    assert decode_segmentation(poly, 20, 30)[6:9, 5:11].all()


# ---------------------------------------------------------------- prompts
def test_prompts_land_on_the_object(scenes):
    rng = np.random.default_rng(1)
    for scene in scenes[:20]:
        h, w = scene.image.shape[:2]
        for k, obj in enumerate(scene.objects):
            m = obj.visible
            x, y = prompts.sample_positive_point(m, rng)
            assert m[int(y), int(x)]
            others = np.zeros_like(m)
            for j, o in enumerate(scene.objects):
                if j != k:
                    others |= o.visible
            for x, y in prompts.sample_negative_points(m, rng, 4, others):
                assert not m[int(y), int(x)]
            box = obj.box
            jittered = prompts.jitter_box(box, rng, image_hw=(h, w))
            bw, bh = box[2] - box[0], box[3] - box[1]
            limits = [0.1 * bw, 0.1 * bh] * 2
            assert all(abs(a - b) <= lim + 1e-6 for a, b, lim in zip(jittered, box, limits, strict=True))
            scribble = prompts.sample_scribble(m, rng)
            assert 3 <= len(scribble.points) <= 8 and 3 <= scribble.width <= 5
            assert all(m[int(y), int(x)] for x, y in scribble.points)
            stroke = prompts.scribble_mask(scribble, h, w)
            assert stroke.any() and not (stroke & ~m).any()
            np.testing.assert_array_equal(prompts.box_mask(box, h, w), _fill_box(box, h, w))


def _fill_box(box, h, w):
    out = np.zeros((h, w), bool)
    out[box[1] : box[3], box[0] : box[2]] = True
    return out


def test_points_mask_uses_glee_demo_half_size():
    m = prompts.points_mask([(10.5, 20.5)], 400, 200)
    assert _box(m) == (5, 10, 16, 31)  # half-size (H//40, W//40) = (10, 5)
    assert not prompts.points_mask([], 40, 40).any()


# ---------------------------------------------------------------- videos
def _resize_ratio(a, b):
    return b.radius / a.radius


def _small_share(scenes):
    """Share of objects whose whole-shape box has a longest side under 40 px."""
    boxes = [_box(o.full_mask) for scene in scenes for o in scene.objects]
    return np.mean([max(x1 - x0, y1 - y0) < 40 for x0, y0, x1, y1 in boxes])


def test_log_sizes_draw_more_small_objects_within_the_spec():
    log = [generate_scene(77, i, SceneConfig(log_sizes=True)) for i in range(30)]
    _check_scene_invariants(log)
    # log-uniform on 20-160 puts a third of the draws under 40 px, uniform a seventh
    assert _small_share(log) > _small_share([generate_scene(77, i) for i in range(30)]) + 0.1


def _touching_share(videos):
    """Share of annotated object-frames whose mask touches (within 2 px) another object's mask."""
    touching = total = 0
    for video in videos:
        for t in range(len(video.frames)):
            masks = [track.masks[t] for track in video.tracks if track.masks[t] is not None]
            for i, m in enumerate(masks):
                grown = ndimage.binary_dilation(m, iterations=2)
                total += 1
                touching += any((grown & n).any() for j, n in enumerate(masks) if j != i)
    return touching / total


def test_crossing_videos_keep_the_spec_and_meet_more_often():
    config = VideoConfig(frames_min=8, frames_max=12, crossing=1.0, log_sizes=True)
    crossing = [generate_video(55, i, config) for i in range(12)]
    _check_video_invariants(crossing)
    plain = [generate_video(55, i, VideoConfig(frames_min=8, frames_max=12)) for i in range(12)]
    assert _touching_share(crossing) > _touching_share(plain) + 0.1


def test_video_invariants(videos):
    entering, leaving = _check_video_invariants(videos)
    assert entering and leaving


def _check_video_invariants(videos):
    """Assert the spec's rules for every video; return how many tracks enter and how many leave the frame."""
    entering = leaving = 0
    for video in videos:
        h, w = video.frames[0].shape[:2]
        assert 8 <= len(video.frames) <= 32 and all(f.shape == (h, w, 3) for f in video.frames)
        assert 1 <= len(video.tracks) <= 6
        assert len({t.look.colour for t in video.tracks}) == len(video.tracks)
        ss = 4 if video.attributes["antialias"] else 1
        for t in range(len(video.frames)):
            covered = np.zeros((h, w), bool)
            for track in reversed(video.tracks):
                raster = rasterize(track.shapes[t], ss)
                x0, y0, x1, y1 = _box(raster.mask)
                assert 20 <= x1 - x0 <= 160 and 20 <= y1 - y0 <= 160
                full = paste(raster, h, w)
                visible = full & ~covered
                covered |= full
                annotated = visible.sum() >= 0.4 * raster.mask.sum() and visible.any()
                assert (track.masks[t] is not None) == annotated
                if annotated:
                    np.testing.assert_array_equal(track.masks[t], visible)
        assert any(track.masks[0] is not None for track in video.tracks)
        for track in video.tracks:
            present = [t for t, m in enumerate(track.masks) if m is not None]
            assert present and max(np.diff(present), default=1) <= 5  # gaps of at most 4 frames
            entering += present[0] > 0
            leaving += present[-1] < len(track.masks) - 1
            for a, b in zip(track.shapes, track.shapes[1:], strict=False):
                assert math.hypot(b.cx - a.cx, b.cy - a.cy) <= 8.0
                assert abs(b.angle - a.angle) <= math.radians(5) + 1e-9
                assert 1 / 1.02 - 1e-9 <= _resize_ratio(a, b) <= 1.02 + 1e-9
                assert a.kind == b.kind and a.ratio == b.ratio
    return entering, leaving


def test_video_expressions_are_unique_in_the_first_frame(videos):
    count = 0
    for video in videos:
        objs, index = [], []
        for i, track in enumerate(video.tracks):
            m = track.masks[0]
            if m is not None:
                index.append(i)
                objs.append(
                    {
                        "shape": track.shapes[0].kind,
                        "colour": track.look.colour,
                        "area": m.sum(),
                        "box": _box(m),
                    }
                )
        for i, track in enumerate(video.tracks):
            assert track.expressions == [] or i in index
            for sentence in track.expressions:
                assert [index[j] for j in resolve(sentence, objs)] == [i]
                count += 1
    assert count > 0


def test_ytvis_files_round_trip(tmp_path):
    config = VideoConfig(min_size=256, max_size=300, frames_min=8, frames_max=10)
    summary = write_videos(tmp_path, 2, seed=4, workers=1, config=config, progress=False)
    data = json.loads(summary.annotation_file.read_text())
    dataset = YtvisDataset(summary.annotation_file)
    assert len(dataset) == 2
    for i, rec in enumerate(data["videos"]):
        video = generate_video(4, i, config)
        sample = dataset[i]
        assert rec["length"] == len(rec["file_names"]) == len(video.frames) == len(sample.frames)
        np.testing.assert_array_equal(sample.frames[0], video.frames[0])
        assert [o.category_name for o in sample.objects] == [t.shapes[0].kind for t in video.tracks]
        for obj, track in zip(sample.objects, video.tracks, strict=True):
            assert obj.expressions == track.expressions and obj.colour == track.look.colour
            for t, m in enumerate(track.masks):
                if m is None:
                    assert obj.masks[t] is None and obj.boxes[t] is None and obj.areas[t] is None
                else:
                    np.testing.assert_array_equal(obj.masks[t], m)
                    np.testing.assert_array_equal(obj.boxes[t], _box(m))
                    assert obj.areas[t] == m.sum()
    assert summary.instances == sum(s is not None for a in data["annotations"] for s in a["segmentations"])


def test_cli_commands(tmp_path):
    from glee.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app, ["data", "synth", "images", str(tmp_path / "i"), "-n", "2", "-s", "1", "-w", "1", "-q"]
    )
    assert res.exit_code == 0, res.output
    assert "wrote 2 images" in res.output and (tmp_path / "i" / "images" / "000001.png").exists()
    res = runner.invoke(
        app,
        [
            "data",
            "synth",
            "images",
            str(tmp_path / "n"),
            "-n",
            "2",
            "-s",
            "1",
            "-w",
            "1",
            "-q",
            "--no-ref-margins",
            "--log-sizes",
        ],
    )
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "n" / "annotations.json").read_text())["info"]["config"]
    assert config["ref_margins"] is False and config["log_sizes"] is True
    res = runner.invoke(
        app,
        [
            "data",
            "synth",
            "videos",
            str(tmp_path / "v"),
            "-n",
            "1",
            "-w",
            "1",
            "-q",
            "--frames-min",
            "8",
            "--frames-max",
            "8",
            "--max-size",
            "256",
            "--frame-format",
            "jpg",
            "--crossing",
            "0.5",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote 1 videos" in res.output and (tmp_path / "v" / "frames" / "000000" / "00007.jpg").exists()
    config = json.loads((tmp_path / "v" / "annotations.json").read_text())["info"]["config"]
    assert config["crossing"] == 0.5 and config["log_sizes"] is False
    res = runner.invoke(
        app, ["data", "synth", "images", str(tmp_path / "x"), "--min-size", "400", "--max-size", "300"]
    )
    assert res.exit_code != 0
