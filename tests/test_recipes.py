"""Training recipes (chapter 08b_recipes): each function against its closed form, each TrainConfig flag against
the default run (it changes what it should and nothing else), the saved sampler, resuming, and the CLI flags."""

import json
import math

import pytest
import torch

from minisd import flow_training, scene_training
from minisd import recipes as R
from minisd import train as T
from minisd.diffusion import DDPMScheduler, predict_original
from minisd.modeling import save_whole
from minisd.unet import SD_NOISE_SCHEDULE
from test_train import _unet_run, make_tiny_parts

# The default run's six UNet losses, recorded before the recipe flags existed (commit de2eb02): the tiny_parts
# fixture below (tests/test_train.py's tiny run), train_unet_stage with unet_steps=6, unet_batch=4, on the CPU under
# `taskset -c 1 env OMP_NUM_THREADS=1`. Other thread counts change the last bits (about 1e-7), hence rel=1e-6.
DEFAULT_LOSSES = [1.1554597616195679, 1.0860190391540527, 0.9878025650978088, 0.9688720107078552,
                  0.9111342430114746, 1.042128562927246]


@pytest.fixture(scope="module")
def tiny_parts():
    return make_tiny_parts()


ON = dict(prediction_type={"prediction_type": "v_prediction"},
          zero_terminal_snr={"prediction_type": "v_prediction", "zero_terminal_snr": True},
          min_snr_gamma={"min_snr_gamma": 5.0}, timestep_sampling={"timestep_sampling": "logit_normal"},
          offset_noise={"offset_noise": 0.1})


def diffusers_compute_snr(alphas_cumprod, timesteps):
    "diffusers.training_utils.compute_snr, transcribed."
    sqrt_alphas_cumprod = alphas_cumprod**0.5
    sqrt_one_minus_alphas_cumprod = (1.0 - alphas_cumprod) ** 0.5
    alpha = sqrt_alphas_cumprod.to(device=timesteps.device)[timesteps].float()
    sigma = sqrt_one_minus_alphas_cumprod.to(device=timesteps.device)[timesteps].float()
    return (alpha / sigma) ** 2


def diffusers_weights(snr, snr_gamma, prediction_type, timesteps):
    "examples/text_to_image/train_text_to_image.py's min-SNR weights (after PR #6307), transcribed."
    mse_loss_weights = torch.stack([snr, snr_gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0]
    if prediction_type == "epsilon":
        mse_loss_weights = mse_loss_weights / snr
    elif prediction_type == "v_prediction":
        mse_loss_weights = mse_loss_weights / (snr + 1)
    return mse_loss_weights


def test_snr_and_min_snr_weights_match_diffusers_and_the_x0_loss():
    s = DDPMScheduler(**SD_NOISE_SCHEDULE)
    t = torch.arange(0, 1000, 7)
    snr = R.compute_snr(s.alphas_cumprod, t)
    torch.testing.assert_close(snr, diffusers_compute_snr(s.alphas_cumprod, t), rtol=1e-5, atol=0)
    for kind in R.PREDICTION_TYPES:
        for gamma in (1.0, 5.0):
            torch.testing.assert_close(R.min_snr_weight(snr, gamma, kind), diffusers_weights(snr, gamma, kind, t))
    # each weight times its target's squared error is min(SNR, gamma) times the x_0 error, on a zero-SNR schedule
    g = torch.Generator().manual_seed(0)
    x0, eps, err = (torch.randn(len(t), 4, 2, 2, generator=g) for _ in range(3))
    for kind in R.PREDICTION_TYPES:
        zs = DDPMScheduler(**SD_NOISE_SCHEDULE, **R.recipe_scheduler_config(
            {"prediction_type": kind, "zero_terminal_snr": kind != "epsilon"}))
        abar, snr = zs.alphas_cumprod[t].view(-1, 1, 1, 1), R.compute_snr(zs.alphas_cumprod, t)
        target = {"epsilon": eps, "sample": x0, "v_prediction": zs.get_velocity(x0, eps, t)}[kind]
        x0_hat, _ = predict_original(target + err, zs.add_noise(x0, eps, t), abar, kind)
        ours = R.min_snr_weight(snr, 5.0, kind) * (err**2).mean((1, 2, 3))
        paper = snr.clamp(max=5.0) * ((x0 - x0_hat) ** 2).mean((1, 2, 3))  # min(SNR, gamma) on the x_0 error
        torch.testing.assert_close(ours, paper, rtol=1e-4, atol=1e-6)


def test_min_snr_weight_at_zero_snr_has_no_nan():
    snr = torch.tensor([0.0, 1e-8, 5.0, 100.0])
    assert R.min_snr_weight(snr, 5.0, "epsilon").tolist() == [1.0, 1.0, 1.0, pytest.approx(0.05)]
    assert R.min_snr_weight(snr, 5.0, "v_prediction")[0] == 0 and R.min_snr_weight(snr, 5.0, "sample")[0] == 0
    for kind in R.PREDICTION_TYPES:
        assert torch.isfinite(R.min_snr_weight(snr, 5.0, kind)).all()
    with pytest.raises(ValueError, match="min_snr_gamma must be > 0"):
        R.min_snr_weight(snr, 0.0)


def test_diffusion_loss_is_mse_at_gamma_0_and_the_weighted_mean_otherwise():
    s = DDPMScheduler(**SD_NOISE_SCHEDULE)
    g = torch.Generator().manual_seed(1)
    out, target = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    t = torch.tensor([5, 500, 990])
    assert torch.equal(R.diffusion_loss(out, target, t, s), torch.nn.functional.mse_loss(out, target))
    w = R.min_snr_weight(R.compute_snr(s.alphas_cumprod, t), 5.0)
    expected = (w * ((out - target) ** 2).mean((1, 2, 3))).mean()
    torch.testing.assert_close(R.diffusion_loss(out, target, t, s, 5.0), expected)


def test_timestep_sampling_closed_forms_and_diffusers():
    from diffusers.training_utils import compute_density_for_timestep_sampling as diffusers_density

    n = 100_000
    assert torch.equal(R.sample_timesteps(n, torch.Generator().manual_seed(0)),
                       torch.randint(0, 1000, (n,), generator=torch.Generator().manual_seed(0)))
    assert R.timesteps_from_u(torch.tensor([0.0, 0.0009, 0.001, 0.5, 0.9999, 1.0])).tolist() == [0, 0, 1, 500, 999, 999]
    for scheme, kw in (("logit_normal", dict(logit_mean=0.0, logit_std=1.0)), ("mode", dict(mode_scale=1.29))):
        u = diffusers_density(scheme, n, generator=torch.Generator().manual_seed(2), **kw)
        t = R.sample_timesteps(n, torch.Generator().manual_seed(2), scheme)
        assert torch.equal(t, (u * 1000).long().clamp(max=999))  # SD3's scripts' indexing, on the same draw
    t = R.sample_timesteps(n, torch.Generator().manual_seed(3), "logit_normal", logit_mean=0.5, logit_std=0.8)
    closed = 0.5 * (1 + math.erf((math.log(0.25 / 0.75) - 0.5) / (0.8 * math.sqrt(2))))  # P(u < 0.25)
    assert (t < 250).float().mean().item() == pytest.approx(closed, abs=0.005)
    f = 1 - 0.75 - 1.29 * (math.cos(math.pi * 0.75 / 2) ** 2 - 1 + 0.75)  # the mode map at r = 0.75
    t = R.sample_timesteps(n, torch.Generator().manual_seed(4), "mode")
    assert (t < 1000 * f).float().mean().item() == pytest.approx(0.25, abs=0.005)


def test_offset_noise_is_one_draw_per_sample_and_channel():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(400, 4, 3, 3, generator=g)
    state = g.get_state()
    assert R.offset_noise(noise, 0.0, g) is noise and torch.equal(g.get_state(), state)
    out = R.offset_noise(noise, 0.3, torch.Generator().manual_seed(9))
    delta = out - noise
    expected = 0.3 * torch.randn((400, 4, 1, 1), generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(delta, expected.expand_as(delta))


def test_check_recipe_and_the_config_name_the_field():
    R.check_recipe({})
    T.config_for("quick", prediction_type="v_prediction", zero_terminal_snr=True)
    for bad, field in (({"zero_terminal_snr": True}, "zero_terminal_snr"),
                       ({"prediction_type": "x0"}, "prediction_type"),
                       ({"timestep_sampling": "cosine"}, "timestep_sampling"),
                       ({"min_snr_gamma": -1.0}, "min_snr_gamma"),
                       ({"offset_noise": float("nan")}, "offset_noise"), ({"logit_std": 0.0}, "logit_std"),
                       ({"mode_scale": 2.0}, "mode_scale")):
        with pytest.raises(ValueError, match=field):
            R.check_recipe(bad)
        with pytest.raises(ValueError, match=field):
            T.config_for("quick", **bad)
    with pytest.raises(TypeError, match="unknown recipe fields"):
        R.check_recipe({"noise_offset": 0.1})
    assert R.recipe_of(T.config_for("quick")) == R.RECIPE_DEFAULTS  # the profiles' defaults are the old training


def test_the_cpu_profile_trains_with_chapter_14s_pair_and_the_others_with_sds():
    for profile, recipe in (("quick", R.SD_RECIPE), ("cpu", R.CPU_RECIPE), ("gpu", R.SD_RECIPE)):
        cfg, sd = T.config_for(profile), T.config_for(profile, **R.SD_RECIPE)
        assert {k: getattr(cfg, k) for k in recipe} == recipe, profile
        changed = {k for k, v in T.asdict(cfg).items() if v != T.asdict(sd)[k]}  # those two fields, nothing else
        assert changed == ({"unet_lr", "min_snr_gamma"} if profile == "cpu" else set()), profile
    assert R.CPU_RECIPE == dict(unet_lr=2e-3, min_snr_gamma=5.0)  # chapter 14's measured pair
    # chapter 11d, measured before chapter 14, keeps SD's rate, and the flow loss has no min-SNR; chapter 10c
    # fine-tunes with the profile's recipe
    assert flow_training.mmdit_config("cpu").min_snr_gamma == 0
    assert {k: getattr(scene_training.scenes_config("cpu"), k) for k in R.CPU_RECIPE} == R.CPU_RECIPE


def test_recipe_scheduler_config():
    assert R.recipe_scheduler_config({}) == R.recipe_scheduler_config({}, sampling=True) == {}  # as before
    assert R.recipe_scheduler_config({"prediction_type": "sample"}, sampling=True) == dict(prediction_type="sample")
    v = {"prediction_type": "v_prediction", "zero_terminal_snr": True}
    assert R.recipe_scheduler_config(v) == dict(prediction_type="v_prediction", rescale_betas_zero_snr=True)
    assert R.recipe_scheduler_config(v, sampling=True) == dict(prediction_type="v_prediction",
                                                               rescale_betas_zero_snr=True, timestep_spacing="trailing")
    assert DDPMScheduler(**SD_NOISE_SCHEDULE, **R.recipe_scheduler_config(v)).alphas_cumprod[-1] == 0




def test_the_default_recipe_trains_as_before(tiny_parts, tmp_path):
    _, losses, _ = _unet_run(tiny_parts, tmp_path)
    assert losses == pytest.approx(DEFAULT_LOSSES, rel=1e-6, abs=0)


@pytest.fixture(scope="module")
def default_draws(tiny_parts, tmp_path_factory):
    return _draws_and_losses(tiny_parts, tmp_path_factory.mktemp("default"))


def _draws_and_losses(tiny_parts, folder, **recipe):
    "The (noise, t) of every step, and the losses, of a 3-step run with `recipe`."
    draws, draw = [], T.draw_noise_and_timesteps

    def recording(*args, **kwargs):
        draws.append(draw(*args, **kwargs))
        return draws[-1]
    T.draw_noise_and_timesteps = recording
    try:
        _, losses, _ = _unet_run(tiny_parts, folder, unet_steps=3, **recipe)
    finally:
        T.draw_noise_and_timesteps = draw
    return draws, losses


@pytest.mark.parametrize("flag", list(ON))
def test_each_flag_changes_the_losses_and_only_its_own_draws(flag, tiny_parts, default_draws, tmp_path):
    cfg = T.replace(tiny_parts[0], **ON[flag])
    changed = {k for k, v in R.recipe_of(cfg).items() if v != R.RECIPE_DEFAULTS[k]}
    assert changed == set(ON[flag])  # the other flags stay at their defaults
    (noise0, t0), losses0 = default_draws[0][0], default_draws[1]
    draws, losses = _draws_and_losses(tiny_parts, tmp_path, **ON[flag])
    (noise, t) = draws[0]
    assert all(abs(a - b) > 1e-6 for a, b in zip(losses, losses0[:1])), (flag, losses, losses0)
    assert torch.equal(t, t0) == (flag != "timestep_sampling")  # noise first, then t, then the offset
    assert torch.equal(noise, noise0) == (flag != "offset_noise")


def test_resume_is_exact_with_every_flag_on(tiny_parts, tmp_path):
    recipe = dict(prediction_type="v_prediction", zero_terminal_snr=True, min_snr_gamma=5.0,
                  timestep_sampling="mode", offset_noise=0.1)
    ema_a, losses_a, _ = _unet_run(tiny_parts, tmp_path / "a", **recipe)
    _unet_run(tiny_parts, tmp_path / "b", stop_after=3, **recipe)
    ema_b, losses_b, _ = _unet_run(tiny_parts, tmp_path / "b", resume=True, **recipe)
    assert losses_a == losses_b and all(math.isfinite(x) for x in losses_a)
    for (k, a), (_, b) in zip(ema_a.state_dict().items(), ema_b.state_dict().items()):
        assert torch.equal(a, b), k


def _train_folder(tiny_parts, folder, **recipe):
    "train() on the UNet stage alone, the frozen parts saved into `folder` first: returns the pipeline."
    cfg, splits, vae, text_encoder, tokenizer = tiny_parts
    for part, name in ((vae, "vae"), (text_encoder, "text_encoder"), (tokenizer, "tokenizer")):
        save_whole(part, folder / name)
    pipe, _ = T.train(T.replace(cfg, unet_steps=2, **recipe), folder, stages=("unet",), device="cpu", splits=splits,
                      progress=False)
    return pipe


def test_the_saved_sampler_carries_the_recipe(tiny_parts, tmp_path):
    from minisd.sampling import DDIMScheduler

    _train_folder(tiny_parts, tmp_path / "default")
    saved = json.loads((tmp_path / "default" / "scheduler" / "scheduler_config.json").read_text())
    before = DDIMScheduler(**SD_NOISE_SCHEDULE, set_alpha_to_one=False)  # the sampler train() saved before recipes
    before.save_pretrained(tmp_path / "before")
    assert saved == json.loads((tmp_path / "before" / "scheduler_config.json").read_text())
    assert (saved["prediction_type"], saved["rescale_betas_zero_snr"], saved["timestep_spacing"]) == (
        "epsilon", False, "leading")
    _train_folder(tiny_parts, tmp_path / "x0", prediction_type="sample")
    saved = json.loads((tmp_path / "x0" / "scheduler" / "scheduler_config.json").read_text())
    assert (saved["prediction_type"], saved["rescale_betas_zero_snr"]) == ("sample", False)
    # the UNet stage alone, re-run without training: the pipeline takes the folder's sampler, not a fresh one
    pipe, _ = T.train(tiny_parts[0], tmp_path / "x0", stages=("vae",), device="cpu", splits=tiny_parts[1],
                      progress=False, resume=True)
    assert pipe.scheduler.config.prediction_type == "sample"


def test_a_v_zero_snr_folder_samples_in_minisd_and_in_diffusers(tiny_parts, tmp_path):
    from minisd.pipeline import StableDiffusionPipeline

    folder = tmp_path / "v"
    _train_folder(tiny_parts, folder, prediction_type="v_prediction", zero_terminal_snr=True, min_snr_gamma=5.0)
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    c = pipe.scheduler.config
    assert (c.prediction_type, c.rescale_betas_zero_snr, c.timestep_spacing) == ("v_prediction", True, "trailing")
    images = pipe(["a red circle", "a blue square"], num_inference_steps=4, guidance_scale=4.0,
                  generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.isfinite(images).all()
    pipe.scheduler.set_timesteps(4)
    assert pipe.scheduler.timesteps[0] == 999  # the first step is the one trained at SNR = 0
    diffusers = pytest.importorskip("diffusers")
    theirs = diffusers.DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    assert (theirs.config.prediction_type, theirs.config.rescale_betas_zero_snr, theirs.config.timestep_spacing) == (
        "v_prediction", True, "trailing")
    theirs.set_timesteps(4)
    assert theirs.timesteps.tolist() == pipe.scheduler.timesteps.tolist()
    torch.testing.assert_close(theirs.alphas_cumprod, pipe.scheduler.alphas_cumprod)


def test_cli_recipe_flags_parse_and_fail_in_one_line(capsys):
    from minisd.__main__ import build_parser, main
    from minisd.cli_train import recipe_overrides

    args = build_parser().parse_args(["train", "--prediction-type", "v_prediction", "--zero-terminal-snr",
                                      "--min-snr-gamma", "5", "--timestep-sampling", "logit_normal",
                                      "--logit-mean", "-0.5", "--logit-std", "1.2", "--offset-noise", "0.05"])
    cfg = T.config_for("quick")
    assert recipe_overrides(args, cfg) == dict(prediction_type="v_prediction", zero_terminal_snr=True,
                                               min_snr_gamma=5.0, timestep_sampling="logit_normal", logit_mean=-0.5,
                                               logit_std=1.2, offset_noise=0.05)
    assert recipe_overrides(build_parser().parse_args(["train"]), cfg) == {}  # no flag: the profile's recipe
    for argv, message in ((["--zero-terminal-snr"], "zero_terminal_snr needs prediction_type"),
                          (["--logit-std", "2"], "--logit-std applies to --timestep-sampling logit_normal"),
                          (["--timestep-sampling", "mode", "--mode-scale", "3"], "mode_scale must be in"),
                          (["--model", "mmdit", "--min-snr-gamma", "5"], "the recipe flags are for --model unet")):
        assert main(["train", "--profile", "quick", "--out", "/nonexistent/never", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    for argv in (["--prediction-type", "x0"], ["--min-snr-gamma", "-1"], ["--offset-noise", "nan"],
                 ["--timestep-sampling", "cosine"], ["--logit-mean", "inf"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(["train", *argv])
        assert e.value.code == 2
    capsys.readouterr()
