"""Rectified-flow training of the MMDiT (chapter 11d): the objective, the times, exact resuming, the saved
StableDiffusion3Pipeline folder in minisd and diffusers, and `python -m minisd train --model mmdit` / `sample`.

Tiny runs on a few dozen images, offline; the diffusers test skips when diffusers is not installed.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from minisd import __main__ as cli
from minisd import flow_training as F
from minisd.data import make_captioned_shapes
from minisd.flow import FlowMatchEulerDiscreteScheduler
from minisd.sd3_pipeline import StableDiffusion3Pipeline
from minisd.training_utils import STATE_NAME

SPLITS_SMALL = dict(image_size=32, n_train=64, n_test=8, n_heldout=8)
PROMPTS = ["a red circle in the top left", "a small blue square in the center"]


def _tiny_config(**overrides):
    settings = dict(vae_steps=2, clip={"steps": 2}, unet_steps=6, unet_batch=4, checkpoint_every=2, warmup=2)
    return F.mmdit_config("quick", **{**settings, **overrides})


@pytest.fixture(scope="module")
def splits():
    return make_captioned_shapes(**SPLITS_SMALL, seed=0)


@pytest.fixture(scope="module")
def trained(splits, tmp_path_factory):
    "One uninterrupted tiny run: (folder, pipe, report)."
    folder = tmp_path_factory.mktemp("sd3") / "run"
    pipe, report = F.train_mmdit(_tiny_config(), folder, device="cpu", splits=splits, progress=False)
    return folder, pipe, report


def test_the_training_pair_is_the_straight_path_and_its_velocity():
    x0, eps, t = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.5]]), torch.tensor([0.25])
    x_t, target = F.flow_matching_inputs(x0, eps, t)
    assert torch.allclose(x_t, torch.tensor([[1.5, -1.375]]))  # 0.75 x0 + 0.25 eps, by hand
    assert torch.equal(target, torch.tensor([[2.0, 2.5]]))  # eps - x0, by hand
    x0, eps, t = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.tensor([0.0, 0.5, 1.0])
    x_t, target = F.flow_matching_inputs(x0, eps, t)
    assert torch.equal(x_t[0], x0[0]) and torch.equal(x_t[2], eps[2])  # t = 0 is data, t = 1 noise


@pytest.mark.parametrize("scheme", ["logit_normal", "mode", "uniform"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_training_times_come_from_the_schedulers_grid(scheme, shift):
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    timesteps, sigmas = F.sample_training_times(scheduler, 500, scheme, generator=torch.Generator().manual_seed(0))
    assert timesteps.shape == sigmas.shape == (500,)
    assert torch.allclose(timesteps, sigmas * 1000)
    assert bool((sigmas > 0).all() and (sigmas <= 1).all())
    assert set(sigmas.tolist()) <= set(scheduler.sigmas.tolist())
    again, _ = F.sample_training_times(scheduler, 500, scheme, generator=torch.Generator().manual_seed(0))
    assert torch.equal(timesteps, again)


def test_logit_normal_puts_more_steps_in_the_middle_than_uniform():
    scheduler = FlowMatchEulerDiscreteScheduler()
    middle = {}
    for scheme in ("logit_normal", "uniform"):
        _, s = F.sample_training_times(scheduler, 20_000, scheme, generator=torch.Generator().manual_seed(0))
        middle[scheme] = ((s > 0.25) & (s < 0.75)).float().mean().item()
    assert middle["logit_normal"] > middle["uniform"] + 0.1


def test_profiles_give_valid_transformers():
    for profile in ("quick", "cpu", "gpu"):
        cfg = F.mmdit_config(profile)
        side, patch = cfg.transformer["sample_size"], cfg.transformer["patch_size"]
        assert side % patch == 0 and cfg.max_sequence_length == 0


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(trained, splits, tmp_path):
    folder_a, pipe_a, _ = trained
    state_a = load_file(folder_a / STATE_NAME)
    cfg = _tiny_config()
    F.train_mmdit(cfg, tmp_path, device="cpu", splits=splits, progress=False, stop_after=3)
    assert load_file(tmp_path / STATE_NAME)["losses"].numel() == 3
    pipe_b, _ = F.train_mmdit(cfg, tmp_path, device="cpu", splits=splits, progress=False, resume=True)
    assert json.loads((tmp_path / "transformer_losses.json").read_text()) == \
        json.loads((folder_a / "transformer_losses.json").read_text())
    for (k, a), (_, b) in zip(pipe_a.transformer.state_dict().items(), pipe_b.transformer.state_dict().items()):
        assert torch.equal(a, b), k
    state_b = load_file(tmp_path / STATE_NAME)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_the_folder_is_an_sd3_pipeline_that_minisd_loads(trained):
    folder, pipe, report = trained
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["text_encoder_3"] == [None, None]
    assert F.trained_max_sequence_length(folder) == 0 and report["transformer_steps"] == 6
    back = StableDiffusion3Pipeline.from_pretrained(folder)
    side = back.transformer.config.sample_size
    x = torch.randn(2, 4, side, side, generator=torch.Generator().manual_seed(0))
    a = pipe(PROMPTS, num_inference_steps=3, guidance_scale=3.0, latents=x.clone(), max_sequence_length=0,
             progress=False)
    b = back(PROMPTS, num_inference_steps=3, guidance_scale=3.0, latents=x.clone(), max_sequence_length=0,
             progress=False)
    assert a.shape == (2, 3, 32, 32) and torch.allclose(a, b, atol=1e-6)
    # both CLIP slots hold the mini CLIP's text encoder, projection included
    for k, v in back.text_encoder.state_dict().items():
        assert torch.equal(v, back.text_encoder_2.state_dict()[k]), k


def test_diffusers_loads_the_trained_folder_and_draws_the_same_images(trained):
    diffusers = pytest.importorskip("diffusers")
    folder, pipe, _ = trained
    theirs = diffusers.StableDiffusion3Pipeline.from_pretrained(folder, text_encoder_3=None, tokenizer_3=None)
    theirs.set_progress_bar_config(disable=True)
    side = pipe.transformer.config.sample_size
    x = torch.randn(2, 4, side, side, generator=torch.Generator().manual_seed(1))
    ours = pipe(PROMPTS, num_inference_steps=3, guidance_scale=4.0, latents=x.clone(), max_sequence_length=0,
                progress=False)
    their = theirs(PROMPTS, num_inference_steps=3, guidance_scale=4.0, latents=x.clone(), max_sequence_length=0,
                   output_type="pt").images
    assert (ours - their).abs().max().item() < 1e-4


def test_cli_trains_an_mmdit_and_samples_it(splits, tmp_path, monkeypatch, capsys):
    tiny = _tiny_config(unet_steps=3)
    monkeypatch.setattr(F, "mmdit_config", lambda profile=None, **kw: tiny)
    monkeypatch.setitem(cli.DATASETS, "shapes", lambda args, cfg: (splits, cfg))
    out = tmp_path / "ckpt"
    assert cli.main(["train", "--model", "mmdit", "--profile", "quick", "--out", str(out)]) == 0
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "StableDiffusion3Pipeline"
    png = tmp_path / "grid.png"
    argv = ["sample", "--checkpoint", str(out), "--prompt", PROMPTS[0], "--steps", "2", "--out", str(png)]
    assert cli.main(argv) == 0
    assert png.is_file()
    capsys.readouterr()
    for argv in (["train", "--model", "mmdit", "--stage", "unet", "--out", str(out)],
                 ["sample", "--checkpoint", str(out), "--prompt", "x", "--scheduler", "dpm++", "--out", str(png)]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error:" in err, err
