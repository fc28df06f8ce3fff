"""The scenes dataset (chapter 10a: layout, captions and metadata, held-out splits) and the exact scene reader
and the benchmark (chapter 10b)."""

import math

import numpy as np
import pytest
import torch
from datasets import Image

from minisd import scene_benchmark, scenes
from minisd.data import HELDOUT_PAIRS, images_to_tensor
from minisd.reader import degrade

SMALL = {"train": 120, "test": 300, "test_heldout_pairs": 40, "test_heldout_combos": 40}


@pytest.fixture(scope="module")
def splits():
    return scenes.make_scenes(SMALL, seed=0)


def _pairs(record):
    return [(o["colour"], o["shape"]) for o in record["objects"]]


def _meta(split):
    return list(split.select_columns(["caption", "task", "objects", "include", "exclude", "relation"]))


def test_same_seed_same_bytes_other_seed_other_bytes():
    sizes = {k: 12 for k in scenes.SPLITS}
    a, b, c = (scenes.make_scenes(sizes, seed=s) for s in (0, 0, 1))
    for name in scenes.SPLITS:
        png = [split[name].cast_column("image", Image(decode=False))["image"] for split in (a, b, c)]
        assert [p["bytes"] for p in png[0]] == [p["bytes"] for p in png[1]]
        assert [p["bytes"] for p in png[0]] != [p["bytes"] for p in png[2]]
        assert _meta(a[name]) == _meta(b[name])


def test_splits_sizes_columns_and_image_size(splits):
    assert {k: len(v) for k, v in splits.items()} == SMALL
    for split in splits.values():
        assert split.column_names == ["image", "caption", "task", "objects", "include", "exclude", "relation"]
        assert split[0]["image"].size == (scenes.SCENE_SIZE, scenes.SCENE_SIZE)


def test_render_scenes_reproduces_the_stored_images(splits):
    test = splits["test"].select(range(30))
    drawn = torch.from_numpy(scenes.render_scenes(test["objects"])).permute(0, 3, 1, 2) / 255
    assert torch.equal(drawn, images_to_tensor(test))


def test_objects_inside_the_image_and_apart_by_the_margin(splits):
    for split in splits.values():
        for record in _meta(split):
            objs = record["objects"]
            assert 1 <= len(objs) <= 4
            enclosing = [scenes.ENCLOSING[o["shape"]] * o["r"] for o in objs]
            for o, e in zip(objs, enclosing):
                assert scenes.BORDER + e - 1e-3 <= min(o["cx"], o["cy"])
                assert max(o["cx"], o["cy"]) <= scenes.SCENE_SIZE - scenes.BORDER - e + 1e-3
            for i in range(len(objs)):
                for j in range(i):
                    gap = math.hypot(objs[i]["cx"] - objs[j]["cx"], objs[i]["cy"] - objs[j]["cy"])
                    assert gap >= enclosing[i] + enclosing[j] + scenes.MARGIN - 1e-3


def test_caption_and_metadata_agree(splits):
    for split in splits.values():
        for record in _meta(split):
            task, include, exclude, relation = record["task"], record["include"], record["exclude"], record["relation"]
            assert record["caption"] == scenes.caption_from_record(task, include, relation)
            objs = record["objects"]
            for clause in include:  # every clause is drawn exactly as often as it asks
                have = sum(o["shape"] == clause["shape"] and clause["colour"] in ("", o["colour"]) for o in objs)
                assert have == clause["count"], record
            assert all(sum(o["shape"] == c["shape"] for o in objs) < c["count"] for c in exclude)
            assert (task == "counting") == bool(exclude) and (task == "position") == bool(relation)
            assert all(bool(c["colour"]) == (task in ("colors", "color_attr")) for c in include)
            if relation:
                assert relation in scenes.relative_position(objs[0]["box"], objs[1]["box"])
            if task == "color_attr":
                assert len({c["colour"] for c in include}) == len({c["shape"] for c in include}) == 2


def test_heldout_pairs_and_combos_absent_from_train_and_asked_in_their_splits(splits):
    for name in ("train", "test"):
        for record in _meta(splits[name]):
            assert not set(_pairs(record)) & set(HELDOUT_PAIRS)
            assert not any(a in _pairs(record) and b in _pairs(record) for a, b in scenes.HELDOUT_COMBOS)
    for record in _meta(splits["test_heldout_pairs"]):
        named = [(c["colour"], c["shape"]) for c in record["include"]]
        assert set(named) & set(HELDOUT_PAIRS)
    for record in _meta(splits["test_heldout_combos"]):
        named = {(c["colour"], c["shape"]) for c in record["include"]}
        assert any(named == {a, b} for a, b in scenes.HELDOUT_COMBOS)


def test_load_scenes_caches_per_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("MINISD_CACHE", str(tmp_path))
    monkeypatch.setitem(scenes.SPLIT_SIZES, "quick", {k: 6 for k in scenes.SPLITS})
    first = scenes.load_scenes("quick")
    [folder] = [p for p in tmp_path.iterdir() if p.name.startswith("scenes_")]
    assert "6-6-6-6" in folder.name and {k: len(v) for k, v in first.items()} == {k: 6 for k in scenes.SPLITS}
    assert scenes.load_scenes("quick")["test"]["caption"] == first["test"]["caption"]


def test_reader_reads_real_scenes_of_every_task(splits):
    for name in ("test", "test_heldout_pairs", "test_heldout_combos"):
        result = scene_benchmark.score(images_to_tensor(splits[name]), splits[name])
        for task in [t for t in scenes.TASKS if t in result]:
            r = result[task]
            assert r["hits"] >= 0.99 * r["n"] and r["abstained"] == 0, (name, task, r)


def test_label_components_counts_blobs_with_eight_neighbours():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 1, 1] = mask[0, 2, 2] = True  # touching at a corner: one blob
    mask[0, 5:7, 5:7] = True  # a 2x2 block
    mask[0, 1, 6] = True  # alone
    labels = scene_benchmark.label_components(mask)
    assert len(labels.unique()) - 1 == 3 and labels[0, 1, 1] == labels[0, 2, 2] and labels[0, 0, 0] == 0


def _one(objects):
    return torch.from_numpy(scenes.render_scenes([objects])).permute(0, 3, 1, 2) / 255


RED_CIRCLE = {"shape": "circle", "colour": "red", "cx": 18.0, "cy": 32.0, "r": 6.4}
BLUE_SQUARE = {"shape": "square", "colour": "blue", "cx": 46.0, "cy": 32.0, "r": 6.4}
ATTR = {"task": "color_attr", "relation": "", "exclude": [],  # "a red circle and a blue square"
        "include": [{"shape": "circle", "colour": "red", "count": 1},
                    {"shape": "square", "colour": "blue", "count": 1}]}


def test_swapping_the_colours_fails_color_attr_but_not_two_object():
    swapped = [dict(RED_CIRCLE, colour="blue"), dict(BLUE_SQUARE, colour="red")]
    right, wrong = scene_benchmark.read_scene(torch.cat([_one([RED_CIRCLE, BLUE_SQUARE]), _one(swapped)]))
    two = dict(ATTR, task="two_object", include=[dict(c, colour="") for c in ATTR["include"]])
    assert scene_benchmark.verdict(right, ATTR) == (True, False)
    assert scene_benchmark.verdict(wrong, ATTR) == (False, False)
    assert scene_benchmark.verdict(wrong, two) == (True, False)


def test_counting_is_exact_and_extra_objects_do_not_matter_elsewhere():
    three = [dict(RED_CIRCLE, cx=x, r=3.52) for x in (10.0, 30.0, 50.0)]
    record = {"task": "counting", "relation": "", "include": [{"shape": "circle", "colour": "", "count": 2}],
              "exclude": [{"shape": "circle", "colour": "", "count": 3}]}
    found = scene_benchmark.read_scene(torch.cat([_one(three), _one(three[:2]), _one(three[:1])]))
    assert [scene_benchmark.verdict(f, record)[0] for f in found] == [False, True, False]
    extra = dict(RED_CIRCLE, cx=32.0, cy=10.0, r=3.52)  # a small red circle nobody asked for
    with_extra = scene_benchmark.read_scene(_one([RED_CIRCLE, BLUE_SQUARE, extra]))[0]
    assert scene_benchmark.verdict(with_extra, ATTR) == (True, False)


def test_blank_degraded_and_broken_images_are_misses():
    blank = scene_benchmark.read_scene(torch.zeros(1, 3, 64, 64))[0]
    assert blank == [] and scene_benchmark.verdict(blank, ATTR) == (False, False)
    g = torch.Generator().manual_seed(0)
    noisy = degrade(_one([RED_CIRCLE, BLUE_SQUARE]).repeat(20, 1, 1, 1), 2.0, 0.3, generator=g)
    assert sum(scene_benchmark.verdict(f, ATTR)[0] for f in scene_benchmark.read_scene(noisy)) <= 2
    half = _one([RED_CIRCLE, BLUE_SQUARE])
    half[:, :, :, 18:24] = 0  # cut the right half off the circle: the reader abstains on its shape
    verdict = scene_benchmark.verdict(scene_benchmark.read_scene(half)[0], ATTR)
    assert verdict == (False, True)


@pytest.mark.parametrize("a, b, expected", [
    ((0, 0, 10, 10), (20, 0, 30, 10), {"left of"}),
    ((20, 0, 30, 10), (0, 0, 10, 10), {"right of"}),
    ((0, 0, 10, 10), (0, 20, 10, 30), {"above"}),
    ((0, 20, 10, 30), (0, 0, 10, 10), {"below"}),
    ((0, 0, 10, 10), (20, 20, 30, 30), {"left of", "above"}),  # a diagonal gives two relations
    ((0, 0, 10, 10), (0, 0, 10, 10), set()),  # same place: none
    ((0, 0, 10, 10), (1.9, 0, 11.9, 10), set()),  # offset 1.9 < margin 0.1 * (10 + 10): none
    ((0, 0, 10, 10), (2.1, 0, 12.1, 10), set()),  # past the margin, but 0.1 / 2.1 of the offset is left
    ((0, 0, 10, 10), (3.9, 0, 13.9, 10), set()),  # (3.9 - 2) / 3.9 < 0.5
    ((0, 0, 10, 10), (4.1, 0, 14.1, 10), {"left of"}),  # (4.1 - 2) / 4.1 > 0.5
])
def test_relative_position_follows_genevals_rule(a, b, expected):
    assert scenes.relative_position(a, b) == expected


def test_relative_position_direction_cut_at_half():
    # offset (-10, -h) with no margin: "left of" while 10 / hypot(10, h) > 0.5, that is h < 10 sqrt(3)
    box = (20, 20, 30, 30)
    for h, left in ((17.0, True), (17.5, False)):
        other = (10, 20 - h, 20, 30 - h)
        assert ("left of" in scenes.relative_position(other, box, threshold=0.0)) == left
    assert np.isclose(10 * 3**0.5, 17.32, atol=0.01)


# --- the benchmark (run_benchmark, FD, KID) ---

@pytest.fixture(scope="module")
def features():
    g = torch.Generator().manual_seed(0)
    return torch.randn(400, 8, generator=g, dtype=torch.float64), torch.randn(400, 8, generator=g, dtype=torch.float64)


def test_frechet_distance_is_zero_on_itself_and_matches_the_gaussian_formula(features):
    a, b = features
    assert abs(scene_benchmark.frechet_distance(a, a)) < 1e-8
    shifted = b + 3.0  # same covariance, mean moved by 3 in each of 8 dims: FD ~ 8 * 9 (plus sampling noise)
    assert abs(scene_benchmark.frechet_distance(a, shifted) - scene_benchmark.frechet_distance(a, b) - 72) < 3
    # diagonal Gaussians with variances 1 and 4: Tr(S_a + S_b - 2 (S_a S_b)^1/2) = 8 * (1 + 4 - 4) = 8
    assert abs(scene_benchmark.frechet_distance(a, 2 * b) - 8) < 2


def test_kernel_distance_is_unbiased_and_grows_with_a_difference(features):
    a, b = features
    g = torch.Generator().manual_seed(1)
    kids = [scene_benchmark.kernel_distance(torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g))
            for _ in range(30)]  # pairs of samples of one distribution
    assert abs(np.mean(kids)) < 3 * np.std(kids) / math.sqrt(30)  # mean ~ 0: no positive bias
    assert scene_benchmark.kernel_distance(a, b + 1.0) > 10 * max(abs(k) for k in kids)
    with pytest.raises(ValueError, match="at least 2"):
        scene_benchmark.kernel_distance(a[:1], b)


def test_benchmark_prompts_are_fixed_and_balanced(splits):
    chosen = scene_benchmark.benchmark_prompts(splits, 3, 5)
    assert [r["task"] for r in chosen["test"]] == [t for t in scenes.TASKS for _ in range(3)]
    assert {k: len(v) for k, v in chosen.items()} == {"test": 18, "test_heldout_pairs": 5, "test_heldout_combos": 5}
    assert chosen == scene_benchmark.benchmark_prompts(splits, 3, 5)
    assert scene_benchmark.benchmark_seeds(2, 3) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="asked for 999"):
        scene_benchmark.benchmark_prompts(splits, 999, 5)


def test_real_generator_is_seeded_and_keeps_the_caption(splits):
    records = scene_benchmark.benchmark_prompts(splits, 2, 2)["test"]
    real = scene_benchmark.real_generator(records)
    captions = [r["caption"] for r in records]
    x = real(captions, range(len(captions)))
    assert x.shape == (len(captions), 3, 64, 64) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, real(captions, range(len(captions))))
    assert not torch.equal(x, real(captions, range(100, 100 + len(captions))))
    assert all(scene_benchmark.score(x, records)["per_image"])


def test_run_benchmark_on_real_scenes_reads_every_task(splits):
    report = scene_benchmark.run_benchmark("real", "quick", prompts_per_task=4, images_per_prompt=2, heldout_prompts=6,
                                  scenes=splits, progress=False)
    for scores in (report["tasks"], *report["heldout"].values()):
        for task, s in scores.items():
            if task != "overall":
                assert s["hits"] >= 0.99 * s["n"], (task, s)
                assert s["interval"][0] <= s["accuracy"] <= s["interval"][1] + 1e-9
    assert report["tasks"]["single_object"]["n"] == 8 and set(report["heldout"]) == set(scenes.SPLITS[2:])
    d = report["distribution"]
    assert d["n"] == 48 and all(math.isfinite(v) for v in d.values())
    row = scene_benchmark.leaderboard_row(report, "real", "cmd", machine="m", date="d")
    assert {line.count("|") for line in scene_benchmark.LEADERBOARD_HEADER.splitlines()} == {row.count("|")}
