"""Training on the scenes (chapter 10c): the recipe, a tiny end-to-end run that samples 64x64 scenes, and the
attention-share measure of colour binding."""

import pytest
import torch

from minisd import scene_training, scenes
from minisd.scene_benchmark import pipeline_generator
from minisd.train import config_for, train

SMALL = {"train": 64, "test": 36, "test_heldout_pairs": 8, "test_heldout_combos": 8}


def test_scenes_config_changes_what_the_scenes_need_and_keeps_the_rest():
    for profile in ("quick", "cpu", "gpu"):
        cfg, base = scene_training.scenes_config(profile), config_for(profile)
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
    from minisd.pipeline import StableDiffusionPipeline

    monkeypatch.setenv("MINISD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(scenes.SPLIT_SIZES, "quick", SMALL)
    monkeypatch.setattr(scene_training, "scenes_config", _tiny_scenes_config)
    assert main(["train", "--profile", "quick", "--dataset", "scenes", "--out", str(tmp_path / "run")]) == 0
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "run")
    assert pipe.unet.config.sample_size == 16 and pipe.vae.config.sample_size == 64
