"""The captioned-shapes dataset, the loader for other data, and the attribute reader."""

import numpy as np
import pytest
import torch
from PIL import Image

from minisd import data, own_data, reader
from minisd.core import PROFILES

SMALL = dict(image_size=32, n_train=600, n_test=200, n_heldout=150)


@pytest.fixture(scope="module")
def splits():
    return data.make_captioned_shapes(**SMALL, seed=0)


def test_same_seed_same_bytes_other_seed_other_bytes(splits):
    again = data.make_captioned_shapes(**SMALL, seed=0)
    other = data.make_captioned_shapes(**SMALL, seed=1)
    for name in splits:
        a, b = data.images_to_tensor(splits[name]), data.images_to_tensor(again[name])
        assert torch.equal(a, b) and splits[name]["caption"] == again[name]["caption"]
        assert not torch.equal(a, data.images_to_tensor(other[name]))


def test_split_sizes_columns_and_features(splits):
    assert {k: len(v) for k, v in splits.items()} == {"train": 600, "test": 200, "test_heldout": 150}
    for split in splits.values():
        assert split.column_names == ["image", "caption", "colour", "shape", "size", "position"]
        assert type(split.features["image"]).__name__ == "Image"
        assert split[0]["image"].size == (32, 32)


def test_heldout_pairs_never_in_train_and_only_in_heldout(splits):
    pairs = lambda s: set(zip(s["colour"], s["shape"]))  # noqa: E731
    assert not pairs(splits["train"]) & set(data.HELDOUT_PAIRS)
    assert not pairs(splits["test"]) & set(data.HELDOUT_PAIRS)
    assert pairs(splits["test_heldout"]) == set(data.HELDOUT_PAIRS)
    # every colour and every shape still occurs in train, only not in those pairs
    assert set(splits["train"]["colour"]) == set(data.COLOURS)
    assert set(splits["train"]["shape"]) == set(data.SHAPES)


def test_every_caption_agrees_with_its_attributes(splits):
    omitted = 0
    for split in splits.values():
        for row in split.select_columns(["caption", "shape", "colour", "size", "position"]):
            asked = data.parse_caption(row["caption"])
            assert asked["shape"] == row["shape"] and asked["colour"] == row["colour"]
            assert asked["position"] == row["position"]
            assert asked["size"] in (None, row["size"])
            omitted += asked["size"] is None
    total = sum(len(s) for s in splits.values())
    assert 0.15 < omitted / total < 0.35  # P_OMIT_SIZE = 0.25: size is sometimes left out
    assert len({c.split()[0] for c in splits["train"]["caption"]}) >= 3  # several phrasings


@pytest.mark.parametrize("image_size", [32, 64])
def test_images_contain_the_named_colour_at_the_named_position(image_size):
    n = 300
    rng = np.random.default_rng(0)
    attrs = {k: [v[i] for i in rng.integers(len(v), size=n)] for k, v in data.ATTRIBUTES.items()}
    pixels = data.render(attrs["shape"], attrs["colour"], attrs["size"], attrs["position"], image_size, seed=3)
    assert pixels.shape == (n, image_size, image_size, 3) and pixels.dtype == np.uint8
    for i in range(n):
        img = pixels[i].astype(int)
        # the fully covered pixels are exactly the named colour ...
        full = img.max(-1) == max(data.COLOURS[attrs["colour"][i]])
        assert full.sum() > 0 and (img[full] == data.COLOURS[attrs["colour"][i]]).all(), (i, attrs)
        # ... and the shape's centroid lies within the jitter (0.04 per axis) of the named position
        ys, xs = np.nonzero(full)
        cx, cy = data.POSITION_CENTRES[attrs["position"][i]]
        assert np.hypot((xs.mean() + 0.5) / image_size - cx, (ys.mean() + 0.5) / image_size - cy) < 0.07
        # every clearly lit pixel is a shade of that colour, and the corners are black
        lit = img.max(-1) > 64  # dim edge pixels lose hue to rounding
        rgb = np.array(data.COLOURS[attrs["colour"][i]])
        shade = img[lit] / img[lit].max(-1, keepdims=True) - rgb / rgb.max()
        assert np.abs(shade).max() < 0.1
        assert img[0, 0].sum() == img[-1, -1].sum() == 0


def test_size_changes_area():
    small = data.render(["circle"], ["red"], ["small"], ["center"], seed=0)[0].max(-1) > 127
    large = data.render(["circle"], ["red"], ["large"], ["center"], seed=0)[0].max(-1) > 127
    assert 2.5 < large.sum() / small.sum() < 4.5  # radius ratio 0.20 / 0.11, squared: 3.3


def test_render_rejects_unknown_attributes():
    with pytest.raises(ValueError, match="unknown colour \\['purple'\\]; allowed: red, green"):
        data.render(["circle"], ["purple"], ["small"], ["center"])
    with pytest.raises(ValueError, match="same length"):
        data.render(["circle"], ["red", "red"], ["small"], ["center"])


def test_cache_is_written_once_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("MINISD_CACHE", str(tmp_path))
    first = data.load_captioned_shapes("quick")
    (folder,) = list(tmp_path.iterdir())
    assert folder.name.startswith("captioned_shapes_v") and (folder / "dataset_dict.json").exists()
    assert {len(first[k]) for k in first} == {PROFILES["quick"].n_train, PROFILES["quick"].n_test,
                                             PROFILES["quick"].n_heldout}
    called = []
    monkeypatch.setattr(data, "make_captioned_shapes", lambda *a, **k: called.append(1))
    second = data.load_captioned_shapes("quick")
    assert not called and second["test"]["caption"] == first["test"]["caption"]


def test_attribute_ids(splits):
    ids = data.attribute_ids(splits["test"])
    assert ids.shape == (200, 4) and ids.dtype == torch.long
    row = splits["test"][0]
    assert [data.ATTRIBUTES[k][i] for k, i in zip(data.ATTRIBUTES, ids[0].tolist())] == \
        [row["shape"], row["colour"], row["size"], row["position"]]


def test_load_captioned_from_local_parquet(tmp_path, splits):
    from datasets import Dataset

    small = splits["test"].select(range(5))
    Dataset.from_dict({"img": small["image"], "text": small["caption"], "extra": list(range(5))}).to_parquet(
        str(tmp_path / "part.parquet"))
    for path in (tmp_path / "part.parquet", tmp_path):
        ds = own_data.load_captioned(path, image_column="img", caption_column="text")
        assert ds["caption"] == small["caption"]
        assert torch.equal(data.images_to_tensor(ds), data.images_to_tensor(small))
    with pytest.raises(ValueError, match="caption_column='caption' is not a column"):
        own_data.load_captioned(tmp_path / "part.parquet", image_column="img")


def test_load_captioned_from_image_folder(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    lines = ["file_name,text"]
    for i, colour in enumerate(["red", "blue", "white"]):
        Image.new("RGB", (40, 24), data.COLOURS[colour]).save(folder / f"{i}.png")
        lines.append(f"{i}.png,a {colour} rectangle")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    ds = own_data.load_captioned(folder, caption_column="text")
    assert sorted(ds["caption"]) == ["a blue rectangle", "a red rectangle", "a white rectangle"]
    x = data.images_to_tensor(ds, image_size=16)  # centre-cropped and resized
    assert x.shape == (3, 3, 16, 16)


RATES = ("shape", "colour", "size", "position", "all")


def test_reader_is_exact_on_real_images(splits):
    for name in ("test", "test_heldout"):
        score = reader.adherence(data.images_to_tensor(splits[name]), splits[name]["caption"])
        assert score["hits"] == score["n"] == len(splits[name]) and score["abstained"] == 0, (name, score)


def test_reader_reports_every_attribute_at_64px():
    d = data.make_captioned_shapes(image_size=64, n_train=1, n_test=150, n_heldout=1, seed=5)
    read = reader.read_attributes(data.images_to_tensor(d["test"]))
    for row, seen in zip(d["test"], read):
        assert seen == {k: row[k] for k in data.ATTRIBUTES}


def test_reader_is_robust_to_blur_and_noise(splits):
    x, captions = data.images_to_tensor(splits["test"]), splits["test"]["caption"]
    g = torch.Generator().manual_seed(0)
    mild = reader.adherence(reader.degrade(x, blur=0.7, noise=0.05, generator=g), captions)
    assert all(mild[k] >= 0.98 for k in RATES) and mild["abstained"] <= 0.02 * mild["n"], mild
    # strong degradation: the reader abstains on some shapes rather than guess, but names
    # colour and position as before, and what it does name is almost always right
    strong = reader.degrade(x, blur=1.0, noise=0.1, generator=g)
    score = reader.adherence(strong, captions)
    assert score["all"] >= 0.6 and min(score[k] for k in ("colour", "position")) >= 0.98, score
    named = [(r["shape"], data.parse_caption(c)["shape"]) for r, c in zip(reader.read_attributes(strong), captions)
             if r["shape"] != "none"]
    assert sum(seen != asked for seen, asked in named) <= 0.02 * len(named)


def test_reader_does_not_score_empty_or_wrong_images(splits):
    captions = splits["test"]["caption"][:20]
    black = reader.adherence(torch.zeros(20, 3, 32, 32), captions)
    assert all(black[k] == 0 for k in RATES) and black["abstained"] == 20
    # images of other captions: most attributes are wrong, so "all" collapses
    shuffled = reader.adherence(data.images_to_tensor(splits["test"].select(range(20, 40))), captions)
    assert shuffled["all"] < 0.2


@pytest.mark.parametrize("kind, attribute, least", [("dome", "shape", 0.95), ("half", "shape", 0.95),
                                                   ("blob", "shape", 0.4), ("two-colour", "colour", 0.95),
                                                   ("speckled", "colour", 0.95), ("faint", "shape", 0.0)])
def test_reader_abstains_on_generator_failures(kind, attribute, least):
    images, intended = reader.generator_failures(kind, 120, seed=3)
    assert images.shape == (120, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    read = reader.read_attributes(images)
    abstained = sum(r[attribute] == "none" for r in read)
    assert abstained >= least * len(read), (kind, abstained)
    if kind == "faint":  # still the intended shape: naming it right is fine, naming another is not
        assert all(r["shape"] in ("none", i["shape"]) and r["colour"] == i["colour"] for r, i in zip(read, intended))
    else:  # the intact attributes are still read: position always, colour when only the shape broke
        assert all(r["position"] == i["position"] for r, i in zip(read, intended))
        if attribute == "shape":
            assert all(r["colour"] == i["colour"] for r, i in zip(read, intended))


def test_generator_failures_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        reader.generator_failures("smudge", 3)


def test_abstentions_count_as_misses_and_are_counted():
    images, intended = reader.generator_failures("two-colour", 30, seed=1)
    captions = [data.caption_from_attributes(i["shape"], i["colour"], i["size"], i["position"]) for i in intended]
    score = reader.adherence(images, captions)
    assert score["abstained"] >= 28 and score["colour"] <= 2 / 30 and score["hits"] <= 2


def test_format_rate_reports_counts_interval_and_abstentions():
    assert reader.format_rate(89, 96) == "92.7% (89/96; 95% interval 85.7-96.4%)"
    assert reader.format_rate(89, 96, abstained=2).endswith("; 2 abstained)")
    low, high = reader.wilson_interval(0, 25)
    assert low == 0.0 and 0.13 < high < 0.14
    with pytest.raises(ValueError, match="successes"):
        reader.wilson_interval(5, 3)


def test_wilson_interval_holds_the_rate_and_ends_exactly_at_0_and_1():
    # n / n once came out an ulp below 1, and a figure's error bar (rate - high) went negative
    for n in range(1, 400):
        assert reader.wilson_interval(n, n)[1] == 1.0 and reader.wilson_interval(0, n)[0] == 0.0
        for k in range(0, n + 1, max(1, n // 7)):
            low, high = reader.wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0


def test_adherence_skips_attributes_a_caption_leaves_out():
    img = torch.from_numpy(data.render(["square"], ["red"], ["large"], ["top left"])).permute(0, 3, 1, 2) / 255
    score = reader.adherence(img, ["a red square in the top left"], per_image=True)
    assert np.isnan(score["size"]) and score["all"] == 1.0 and score["per_image"] == [True]
    assert reader.adherence(img, ["a small red square in the top left"])["all"] == 0.0
    with pytest.raises(ValueError, match="same length"):
        reader.adherence(img, [])
