"""Training on the scenes (chapter 10c): the recipe, a tiny end-to-end run that samples 64x64 scenes, and the
attention-share measure of colour binding."""

import json

import pytest
import torch

from minisd import scene_training, scenes
from minisd.scene_benchmark import pipeline_generator
from minisd.data import make_captioned_shapes
from minisd.pipeline import StableDiffusionPipeline
from minisd.recipes import SD_RECIPE
from minisd.train import config_for, train

SMALL = {"train": 64, "test": 36, "test_heldout_pairs": 8, "test_heldout_combos": 8}


def test_scenes_config_changes_what_the_scenes_need_and_keeps_the_rest():
    for profile in ("quick", "cpu", "gpu"):
        cfg, base = scene_training.scenes_config(profile), config_for(profile)  # the profile's recipe
        assert cfg.vae["sample_size"] == scenes.SCENE_SIZE and cfg.vae_crop == 32
        assert cfg.unet["sample_size"] == scenes.SCENE_SIZE // 4 and len(cfg.unet["block_out_channels"]) == 3
        assert cfg.unet["down_block_types"] == ["CrossAttnDownBlock2D"] * 3
        assert cfg.clip == base.clip and cfg.text_data == "captioned_shapes" and cfg.standardise_latents
        assert cfg.vae["block_out_channels"] == base.vae["block_out_channels"]  # the same autoencoder, factor 4
        assert (cfg.unet_lr, cfg.caption_dropout, cfg.seed) == (base.unet_lr, base.caption_dropout, base.seed)
    assert scene_training.scenes_config("quick", unet_steps=3, seed=2).unet_steps == 3


def test_tiny_training_on_scenes_samples_64x64_images(tmp_path):
    splits = scenes.make_scenes(SMALL, seed=0)
    cfg = scene_training.scenes_config("quick", vae_steps=2, vae_batch=4, unet_steps=2, unet_batch=4,
                                       clip={"steps": 2, "batch_size": 16})
    pipe, report = train(cfg, tmp_path / "run", splits=splits, device="cpu", progress=False)
    assert pipe.unet.config.sample_size == 16 and report["unet_steps"] == 2
    assert pipe.vae.config.scaling_factor == 1.0 and len(report["latent_channel_std"]) == 4
    assert pipe.tokenizer.tokenize("circle") == ["circle</w>"]  # a word of the single-object captions
    images = pipeline_generator(pipe, steps=2)(["a red circle and a blue square", "three green triangles"], [0, 1])
    assert images.shape == (2, 3, 64, 64) and torch.isfinite(images).all()


@pytest.fixture(scope="module")
def chapter08(tmp_path_factory):
    "A tiny trained single-object pipeline (32x32 images), in the place of chapter 08's."
    folder = tmp_path_factory.mktemp("chapter08") / "pipe"
    cfg = config_for("quick", vae_steps=2, clip={"steps": 2}, unet_steps=2, unet_batch=4, warmup=1)
    train(cfg, folder, splits=make_captioned_shapes(image_size=32, n_train=64, n_test=8, n_heldout=8, seed=0),
          device="cpu", progress=False)
    return folder


def test_the_fine_tuning_recipe_starts_from_chapter_08s_parts(chapter08, tmp_path):
    base = config_for("quick")
    cfg = scene_training.scenes_config("quick", init_from=chapter08, vae_steps=2, vae_batch=4, unet_steps=2,
                                       unet_batch=4)
    assert cfg.init_from == str(chapter08) and cfg.vae_crop == 32 and not cfg.standardise_latents
    assert cfg.unet["block_out_channels"] == base.unet["block_out_channels"]  # chapter 08's UNet, not a new one
    assert cfg.unet["sample_size"] == scenes.SCENE_SIZE // 4 and cfg.vae["sample_size"] == scenes.SCENE_SIZE
    full = scene_training.scenes_config("cpu", init_from=chapter08)
    cpu = config_for("cpu")  # chapter 08's recipe at cpu (chapter 14's pair), at half its rate and batch
    assert (full.vae_lr, full.unet_lr) == (cpu.vae_lr / 4, cpu.unet_lr / 2) and cpu.unet_lr != SD_RECIPE["unet_lr"]
    assert full.unet_batch == cpu.unet_batch // 2
    assert full.min_snr_gamma == scene_training.scenes_config("cpu").min_snr_gamma == cpu.min_snr_gamma == 5
    assert full.text_encoder_lr == full.unet_lr / 10 and scene_training.scenes_config("cpu").text_encoder_lr == 0
    pipe, report = train(cfg, tmp_path / "run", splits=scenes.make_scenes(SMALL, seed=0), device="cpu",
                         progress=False)
    source = StableDiffusionPipeline.from_pretrained(chapter08)
    assert pipe.vae.config.scaling_factor == source.vae.config.scaling_factor  # kept: the UNet learned at it
    before = source.text_encoder.state_dict()
    moved = [k for k, v in pipe.text_encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert "embeddings.token_embedding.weight" in moved  # it trained with the UNet ...
    assert pipe.tokenizer.encoder == source.tokenizer.encoder  # ... on chapter 08's vocabulary
    images = pipeline_generator(pipe, steps=2)(["a red circle to the left of a blue square"], [0])
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()


def test_attention_share_compares_per_pixel_means():
    m = torch.zeros(16, 16)
    m[0:4, 0:4] = 1.0
    assert scene_training.attention_share(m, (0, 0, 4, 4), (8, 8, 16, 16)) == pytest.approx(1.0)
    assert scene_training.attention_share(m, (8, 8, 16, 16), (0, 0, 4, 4)) == pytest.approx(0.0)
    assert scene_training.attention_share(torch.ones(16, 16), (0, 0, 2, 2), (2, 2, 16, 16)) == pytest.approx(0.5)
    m[8:16, 8:16] = 0.5  # a larger, weaker object: its sum is bigger, its mean is not
    assert scene_training.attention_share(m, (0, 0, 4, 4), (8, 8, 16, 16)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="box"):
        scene_training.attention_share(m, (4, 4, 4, 8), (0, 0, 2, 2))



_SCENES_CONFIG = scene_training.scenes_config


def _tiny_scenes_config(profile, **overrides):
    "The scenes recipe with a few steps of each stage, so the command runs in seconds."
    return _SCENES_CONFIG(profile, vae_steps=2, vae_batch=4, unet_steps=2, unet_batch=4,
                          clip={"steps": 2, "batch_size": 16}, **overrides)


def test_train_command_takes_the_scenes(tmp_path, monkeypatch):
    from minisd.__main__ import main

    monkeypatch.setenv("MINISD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(scenes.SPLIT_SIZES, "quick", SMALL)
    monkeypatch.setattr(scene_training, "scenes_config", _tiny_scenes_config)
    assert main(["train", "--profile", "quick", "--dataset", "scenes", "--out", str(tmp_path / "run")]) == 0
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "run")
    assert pipe.unet.config.sample_size == 16 and pipe.vae.config.sample_size == 64


def test_train_command_fine_tunes_a_pipeline_folder(tmp_path, monkeypatch, chapter08, capsys):
    from minisd.__main__ import main

    monkeypatch.setenv("MINISD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(scenes.SPLIT_SIZES, "quick", SMALL)
    monkeypatch.setattr(scene_training, "scenes_config", _tiny_scenes_config)
    out = tmp_path / "run"
    assert main(["train", "--profile", "quick", "--dataset", "scenes", "--init-from", str(chapter08),
                 "--out", str(out)]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["config"]["init_from"] == str(chapter08) and "clip_final_loss" not in report
    capsys.readouterr()
    assert main(["train", "--profile", "quick", "--init-from", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "not a trained pipeline folder" in err and len(err.splitlines()) == 1
    assert main(["train", "--profile", "quick", "--model", "mmdit", "--init-from", str(chapter08)]) == 2


def test_train_command_text_encoder_lr_flag(tmp_path, chapter08, capsys):
    from minisd.__main__ import main

    out = tmp_path / "run"
    assert main(["train", "--profile", "quick", "--init-from", str(chapter08), "--text-encoder-lr", "1e-3",
                 "--out", str(out)]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["config"]["text_encoder_lr"] == 1e-3
    source = StableDiffusionPipeline.from_pretrained(chapter08).text_encoder
    tuned = StableDiffusionPipeline.from_pretrained(out).text_encoder
    assert not torch.equal(source.embeddings.token_embedding.weight, tuned.embeddings.token_embedding.weight)
    capsys.readouterr()
    with pytest.raises(SystemExit):  # argparse's own error
        main(["train", "--profile", "quick", "--text-encoder-lr", "-1"])
    assert "--text-encoder-lr" in capsys.readouterr().err
    assert main(["train", "--profile", "quick", "--model", "mmdit", "--text-encoder-lr", "1e-4"]) == 2
    assert "--text-encoder-lr applies to --model unet" in capsys.readouterr().err
