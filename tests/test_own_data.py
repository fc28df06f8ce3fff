"""Your own captioned images (chapter 08d's `captioned_splits`, `python -m minisd train --dataset PATH`).

The test writes small datasets in the three file forms (an image folder with metadata.jsonl, a CSV
of file names, a parquet file of image bytes), reads them, checks the one-line errors, and trains
the quick profile end to end on one of them. Nothing touches the network.
"""

import csv
import json

import pytest
import torch
from PIL import Image, ImageDraw

from minisd.__main__ import main
from minisd.data import images_to_tensor
from minisd.own_data import captioned_splits

COLOURS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (40, 60, 240)}
N = 12


def _picture(i):
    "A 48x40 picture (not square: it gets centre-cropped) of a coloured disc, and its caption."
    name = list(COLOURS)[i % 3]
    image = Image.new("RGB", (48, 40))
    x = 8 + 2 * i
    ImageDraw.Draw(image).ellipse((x, 10, x + 20, 30), fill=COLOURS[name])
    return image, f"a {name} disc, number {i}"


@pytest.fixture
def folder(tmp_path):
    "An image folder whose metadata.jsonl holds one {file_name, text} per line."
    root = tmp_path / "folder"
    root.mkdir()
    with open(root / "metadata.jsonl", "w") as f:
        for i in range(N):
            image, caption = _picture(i)
            image.save(root / f"{i}.png")
            f.write(json.dumps({"file_name": f"{i}.png", "text": caption}) + "\n")
    return root


def _forms(folder, tmp_path):
    "The same data as a CSV of file names (relative to the CSV) and as a parquet file of image bytes."
    from datasets import Dataset

    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    with open(tmp_path / "captions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption"])
        writer.writerows([f"folder/{r['file_name']}", r["text"]] for r in rows)
    images = [{"bytes": (folder / r["file_name"]).read_bytes(), "path": None} for r in rows]
    Dataset.from_dict({"picture": images, "words": [r["text"] for r in rows]}).to_parquet(str(tmp_path / "d.parquet"))
    return [(folder, {}), (tmp_path / "captions.csv", dict(image_column="path", caption_column="caption")),
            (tmp_path / "d.parquet", dict(image_column="picture", caption_column="words"))]


def test_the_three_forms_load_alike(folder, tmp_path):
    results = [captioned_splits(path, 16, **columns) for path, columns in _forms(folder, tmp_path)]
    for splits in results:
        assert {name: len(split) for name, split in splits.items()} == {"train": N - 1, "test": 1}
        assert images_to_tensor(splits["train"]).shape == (N - 1, 3, 16, 16)  # cropped and resized once
    expected = {i: _picture(i)[1] for i in range(N)}
    for splits in results:  # every caption is kept, each with its own image
        for split in splits.values():
            for row in split:
                i = int(row["caption"].split()[-1])
                assert row["caption"] == expected[i]
                colour = row["caption"].split()[1]  # the image's brightest channel is its disc's colour's
                brightest = torch.tensor(list(row["image"].getdata())).sum(0).argmax().item()
                assert brightest == list(COLOURS).index(colour)
    csv_split, parquet_split = results[1]["train"], results[2]["train"]
    assert torch.equal(images_to_tensor(csv_split), images_to_tensor(parquet_split))


def test_the_held_out_images_are_fixed_by_the_seed(folder):
    a, b = captioned_splits(folder, 16), captioned_splits(folder, 16)
    assert a["test"]["caption"] == b["test"]["caption"]
    many = captioned_splits(folder, 16, test_fraction=0.25)
    assert len(many["test"]) == 3 and len(many["train"]) == N - 3
    others = {tuple(captioned_splits(folder, 16, test_fraction=0.25, seed=s)["test"]["caption"]) for s in range(4)}
    assert len(others) > 1


def test_a_test_split_of_its_own_is_used(tmp_path):
    for split, count in (("train", 5), ("test", 2)):
        (tmp_path / split).mkdir()
        with open(tmp_path / split / "metadata.jsonl", "w") as f:
            for i in range(count):
                image, caption = _picture(i)
                image.save(tmp_path / split / f"{i}.png")
                f.write(json.dumps({"file_name": f"{i}.png", "text": f"{split} {caption}"}) + "\n")
    splits = captioned_splits(tmp_path, 16)
    assert len(splits["train"]) == 5 and len(splits["test"]) == 2
    assert all(c.startswith("test ") for c in splits["test"]["caption"])


def test_a_missing_column_names_the_columns_found(folder, tmp_path):
    with pytest.raises(ValueError, match=r"caption_column='caption' is not a column of .*folder; "
                                         r"columns: \['image', 'text'\]"):
        captioned_splits(folder, 16, caption_column="caption")
    csv_path = _forms(folder, tmp_path)[1][0]
    with pytest.raises(ValueError, match=r"image_column='image' is not a column of .*captions.csv; "
                                         r"columns: \['path', 'caption'\]"):
        captioned_splits(csv_path, 16, caption_column="caption")


def test_an_unreadable_file_is_named(folder, tmp_path):
    (folder / "3.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read the image .*folder/3\.png of .*folder \(UnidentifiedImage"):
        captioned_splits(folder, 16)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 and then nothing")
    with pytest.raises(ValueError, match=r"cannot read .*broken\.parquet \("):
        captioned_splits(tmp_path / "broken.parquet", 16)
    (tmp_path / "broken.csv").write_text('path,text\n"0.png,an unclosed quote\n')
    with pytest.raises(ValueError, match=r"cannot read .*broken\.csv \("):
        captioned_splits(tmp_path / "broken.csv", 16, image_column="path")
    with pytest.raises(ValueError, match=r"nowhere/at/all: no such file or folder, and no hub dataset"):
        captioned_splits("nowhere/at/all", 16)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"must end in \.parquet, \.csv, \.jsonl"):
        captioned_splits(tmp_path / "notes.txt", 16)


def test_the_command_line_errors_are_one_line(folder, capsys):
    assert main(["train", "--profile", "quick", "--dataset", str(folder), "--caption-column", "caption",
                 "--out", str(folder.parent / "out")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (above it, only the datasets library's progress)
    assert last.startswith("minisd train: error: caption_column='caption' is not a column")
    assert last.endswith("columns: ['image', 'text']")


@pytest.mark.parametrize("form", ["folder", "csv", "parquet"])
def test_training_on_your_own_data_end_to_end(folder, tmp_path, form):
    "`python -m minisd train --profile quick --dataset PATH` trains all three stages; the pipeline samples."
    from minisd.pipeline import StableDiffusionPipeline

    path, columns = _forms(folder, tmp_path)[["folder", "csv", "parquet"].index(form)]
    options = [x for key, value in columns.items() for x in (f"--{key.replace('_', '-')}", value)]
    out = tmp_path / "checkpoint"
    assert main(["train", "--profile", "quick", "--dataset", str(path), *options, "--out", str(out)]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["unet_steps"] == 12 and report["config"]["clip"]["positives"] == "caption"
    pipe = StableDiffusionPipeline.from_pretrained(out)
    image = pipe(["a red disc, number 0"], num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                 progress=False)
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()
    assert pipe.tokenizer.decode(pipe.tokenizer(["a red disc"])[0].tolist(), skip_special_tokens=True) == "a red disc"


def test_shapes_stay_the_default_dataset():
    from minisd.__main__ import DATASETS, build_parser

    args = build_parser().parse_args(["train"])
    assert args.dataset == "shapes" and "shapes" in DATASETS
    assert (args.image_column, args.caption_column) == ("image", "text")
