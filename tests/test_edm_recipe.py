"""EDM as a training recipe (chapter 08b_recipes_edm): the preconditioning against its closed form, the
EDMEulerScheduler against diffusers' (levels, steps, churn, noise, config files both ways), the guard against
swapping parametrisations, the flag in training (what it changes and what it keeps), and a trained folder that
minisd and diffusers sample alike."""

import json
import math

import pytest
import torch

from minisd import edm_recipe as E
from minisd import recipes as R
from minisd import train as T
from minisd.diffusion import DDPMScheduler
from minisd.pipeline import StableDiffusionPipeline, get_scheduler, scheduler_class
from minisd.sampling import DDIMScheduler
from minisd.unet import SD_NOISE_SCHEDULE
from test_recipes import _draws_and_losses, _train_folder
from test_train import _unet_run, make_tiny_parts

EDM = {"edm_sigma_data": 1.0}
CONFIGS = [{}, {"sigma_data": 1.0}, {"sigma_schedule": "exponential", "prediction_type": "v_prediction"},
           {"final_sigmas_type": "sigma_min", "sigma_min": 0.01, "sigma_max": 20.0, "rho": 5.0}]


@pytest.fixture(scope="module")
def tiny_parts():
    return make_tiny_parts()


def test_edm_preconditioning_is_karras_table_1():
    sigma, sd = torch.tensor([0.002, 0.1, 0.5, 1.0, 3.0, 80.0], dtype=torch.float64), 0.5
    c_skip, c_out, c_in, c_noise = E.edm_preconditioning(sigma, sd)
    torch.testing.assert_close(c_skip, sd**2 / (sigma**2 + sd**2))
    torch.testing.assert_close(c_out, sigma * sd / (sigma**2 + sd**2).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + sd**2).sqrt())
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    torch.testing.assert_close(E.edm_preconditioning(sigma, sd, "v_prediction")[1], -c_out)
    # the target F has unit variance for data of std sigma_data, and D(F) is x_0 (x_0 Gaussian: exactly 1)
    torch.testing.assert_close(c_skip**2 * sigma**2 / c_out**2 + (1 - c_skip) ** 2 * sd**2 / c_out**2,
                               torch.ones_like(sigma))
    with pytest.raises(ValueError, match="prediction_type"):
        E.edm_preconditioning(sigma, sd, "sample")


def _fake_model(x, t):
    "A deterministic stand-in for a network: depends on the input and the timestep."
    return torch.tanh(x) * 0.7 + 0.1 * t


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_edm_euler_equals_diffusers_step_by_step(config, steps):
    diffusers = pytest.importorskip("diffusers")
    ours, theirs = E.EDMEulerScheduler(**config), diffusers.EDMEulerScheduler(**config)
    for a, b in ((ours, theirs),):
        torch.testing.assert_close(a.sigmas, b.sigmas, rtol=1e-6, atol=0)  # the training grid, 1001 levels
        torch.testing.assert_close(a.timesteps, b.timesteps, rtol=1e-6, atol=0)
    assert ours.init_noise_sigma == theirs.init_noise_sigma and len(ours) == len(theirs)
    for churn in (0.0, 2.0):
        ours.set_timesteps(steps)
        theirs.set_timesteps(steps)
        torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=1e-6, atol=0)
        torch.testing.assert_close(ours.timesteps, theirs.timesteps, rtol=1e-6, atol=0)
        x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * ours.init_noise_sigma
        y = x.clone()
        g_ours, g_theirs = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        for t_ours, t_theirs in zip(ours.timesteps, theirs.timesteps):
            a, b = ours.scale_model_input(x, t_ours), theirs.scale_model_input(y, t_theirs)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            x = ours.step(_fake_model(a, t_ours), t_ours, x, s_churn=churn, generator=g_ours)
            y = theirs.step(_fake_model(b, t_theirs), t_theirs, y, s_churn=churn, generator=g_theirs).prev_sample
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_custom_sigmas_begin_index_and_add_noise_equal_diffusers():
    diffusers = pytest.importorskip("diffusers")
    ramp = torch.tensor([0.0, 0.3, 0.55, 1.0])
    ours, theirs = E.EDMEulerScheduler(sigma_data=1.0), diffusers.EDMEulerScheduler(sigma_data=1.0)
    ours.set_timesteps(sigmas=ramp)
    theirs.set_timesteps(sigmas=ramp)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas)
    x0, n = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = ours.timesteps[[0, 2, 1]]
    torch.testing.assert_close(ours.add_noise(x0, n, t), theirs.add_noise(x0, n, t))
    for s in (ours, theirs):  # image-to-image: start at index 2
        s.set_timesteps(10)
        s.set_begin_index(2)
    t = ours.timesteps[2:3].repeat(3)
    torch.testing.assert_close(ours.add_noise(x0, n, t), theirs.add_noise(x0, n, t))
    torch.testing.assert_close(ours.scale_model_input(x0, t[0]), theirs.scale_model_input(x0, t[0]))
    with pytest.raises(ValueError, match="not an index"):
        ours.step(x0, 3, x0)


def test_config_files_cross_both_ways(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    ours = E.EDMEulerScheduler(sigma_data=1.0, sigma_schedule="exponential", final_sigmas_type="sigma_min")
    ours.save_pretrained(tmp_path / "ours")
    theirs = diffusers.EDMEulerScheduler.from_pretrained(tmp_path / "ours")
    assert {k: theirs.config[k] for k in ours.config if not k.startswith("_")} == {
        k: v for k, v in ours.config.items() if not k.startswith("_")}
    diffusers.EDMEulerScheduler(sigma_max=40.0, prediction_type="v_prediction").save_pretrained(tmp_path / "theirs")
    back = E.EDMEulerScheduler.from_pretrained(tmp_path / "theirs")
    assert (back.config.sigma_max, back.config.prediction_type, back.config.sigma_data) == (40.0, "v_prediction", 0.5)
    assert scheduler_class("edm_euler") is E.EDMEulerScheduler  # registered, by its short name too
    for bad, key in (({"sigma_schedule": "linear"}, "sigma_schedule"), ({"sigma_min": 0.0}, "sigma_min"),
                     ({"final_sigmas_type": "none"}, "final_sigmas_type"), ({"prediction_type": "sample"},
                                                                             "prediction_type")):
        with pytest.raises(ValueError, match=key):
            E.EDMEulerScheduler(**bad)


def test_samplers_of_the_other_parametrisation_are_refused(tmp_path):
    edm = E.EDMEulerScheduler(sigma_data=1.0)
    for name in ("ddim", "euler", "heun", "DDPMScheduler"):
        with pytest.raises(ValueError, match="EDMEulerScheduler, short name edm_euler"):
            get_scheduler(name, edm.config)
    with pytest.raises(ValueError, match="SD's DDPM schedule"):
        get_scheduler("edm_euler", DDIMScheduler(**SD_NOISE_SCHEDULE).config)
    assert isinstance(get_scheduler("edm_euler", edm.config), E.EDMEulerScheduler)


def test_training_schedule_and_sampler_are_the_old_ones_without_edm():
    assert dict(E.training_schedule({}).config) == dict(DDPMScheduler(**SD_NOISE_SCHEDULE).config)
    old = DDIMScheduler(**SD_NOISE_SCHEDULE, set_alpha_to_one=False)
    assert dict(E.recipe_sampler({}).config) == dict(old.config)
    x0, n, t = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8), torch.tensor([0, 10, 500, 999])
    schedule = E.training_schedule({})
    x_in, t_in = E.model_input(schedule, x0, n, t)
    assert torch.equal(x_in, schedule.add_noise(x0, n, t)) and t_in is t
    assert torch.equal(E.recipe_target(schedule, x0, n, t), n)
    edm = E.recipe_sampler(EDM)
    assert isinstance(edm, E.EDMEulerScheduler) and edm.config.sigma_data == 1.0


def test_edm_training_inputs_and_target():
    schedule = E.training_schedule({**EDM, "prediction_type": "v_prediction"})
    x0, n = torch.randn(5, 4, 8, 8), torch.randn(5, 4, 8, 8)
    sigma = torch.tensor([0.01, 0.2, 1.0, 3.0, 50.0])
    x_in, c_noise = E.model_input(schedule, x0, n, sigma)
    s = sigma.view(-1, 1, 1, 1)
    torch.testing.assert_close(x_in, (x0 + s * n) / (s**2 + 1).sqrt())
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    target = E.recipe_target(schedule, x0, n, sigma)
    torch.testing.assert_close(schedule.precondition_outputs(x0 + s * n, target, s), x0, rtol=0, atol=1e-5)


def test_the_edm_recipe_is_checked_and_draws_log_normal_levels():
    T.config_for("quick", edm_sigma_data=1.0, prediction_type="v_prediction", offset_noise=0.1)
    for bad, field in (({"prediction_type": "sample"}, "prediction_type"), ({"min_snr_gamma": 5.0}, "min_snr_gamma"),
                       ({"zero_terminal_snr": True, "prediction_type": "v_prediction"}, "zero_terminal_snr"),
                       ({"timestep_sampling": "logit_normal"}, "timestep_sampling")):
        with pytest.raises(ValueError, match=field):
            R.check_recipe({**EDM, **bad})
    for bad, field in (({"edm_sigma_data": -1.0}, "edm_sigma_data"), ({"edm_p_std": 0.0}, "edm_p_std"),
                       ({"edm_p_mean": float("inf")}, "edm_p_mean")):
        with pytest.raises(ValueError, match=field):
            R.check_recipe(bad)
    g = torch.Generator().manual_seed(0)
    noise, sigma = R.draw_noise_and_timesteps({**EDM, "edm_p_mean": -0.5, "edm_p_std": 0.8}, 20_000, (1,), g)
    assert sigma.dtype == torch.float32 and (sigma > 0).all()
    assert abs(sigma.log().mean() + 0.5) < 0.03 and abs(sigma.log().std() - 0.8) < 0.03
    g = torch.Generator().manual_seed(0)
    assert torch.equal(noise, torch.randn((20_000, 1), generator=g))  # the noise first, as with every recipe


def test_the_edm_flag_changes_the_levels_and_the_losses_not_the_noise(tiny_parts, tmp_path):
    default_draws, default_losses = _draws_and_losses(tiny_parts, tmp_path / "default")
    draws, losses = _draws_and_losses(tiny_parts, tmp_path / "edm", **EDM)
    (noise0, t0), (noise, sigma) = default_draws[0], draws[0]
    assert torch.equal(noise, noise0) and sigma.is_floating_point() and not t0.is_floating_point()
    assert all(abs(a - b) > 1e-6 for a, b in zip(losses, default_losses)) and all(map(math.isfinite, losses))
    ema_a, losses_a, _ = _unet_run(tiny_parts, tmp_path / "a", **EDM)  # resume stays exact
    _unet_run(tiny_parts, tmp_path / "b", stop_after=3, **EDM)
    ema_b, losses_b, _ = _unet_run(tiny_parts, tmp_path / "b", resume=True, **EDM)
    assert losses_a == losses_b
    assert all(torch.equal(a, b) for a, b in zip(ema_a.state_dict().values(), ema_b.state_dict().values()))


def test_an_edm_folder_samples_alike_in_minisd_and_in_diffusers(tiny_parts, tmp_path):
    folder = tmp_path / "edm"
    _train_folder(tiny_parts, folder, **EDM)
    saved = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "EDMEulerScheduler" and saved["sigma_data"] == 1.0
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    assert isinstance(pipe.scheduler, E.EDMEulerScheduler)
    with pytest.raises(ValueError, match="cannot sample a model trained with EDM"):
        StableDiffusionPipeline.from_pretrained(folder, scheduler="ddim")
    prompts = ["a red circle", "a blue square"]
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    ours = pipe(prompts, num_inference_steps=5, guidance_scale=3.0, latents=latents.clone(), progress=False)
    assert torch.isfinite(ours).all()
    diffusers = pytest.importorskip("diffusers")
    theirs = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    assert type(theirs.scheduler).__name__ == "EDMEulerScheduler"
    theirs.set_progress_bar_config(disable=True)
    images = theirs(prompts, num_inference_steps=5, guidance_scale=3.0, latents=latents.clone(), output_type="pt")
    torch.testing.assert_close(ours, images.images, rtol=0, atol=1e-4)


def test_cli_edm_flags(capsys):
    from minisd.__main__ import build_parser, main
    from minisd.cli_train import recipe_overrides

    args = build_parser().parse_args(["train", "--edm-sigma-data", "1", "--edm-p-mean", "-0.4", "--edm-p-std", "1"])
    assert recipe_overrides(args, T.config_for("quick")) == dict(edm_sigma_data=1.0, edm_p_mean=-0.4, edm_p_std=1.0)
    for argv, message in ((["--edm-p-mean", "0"], "--edm-p-mean applies to EDM"),
                          (["--edm-sigma-data", "1", "--min-snr-gamma", "5"], "min_snr_gamma")):
        assert main(["train", "--profile", "quick", "--out", "/nonexistent/never", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert build_parser().parse_args(["sample", "--prompt", "a", "--scheduler", "edm_euler"]).scheduler == "edm_euler"


def test_the_command_line_samples_an_edm_folder_with_its_own_sampler(tiny_parts, tmp_path, capsys):
    from minisd.__main__ import main

    folder = tmp_path / "edm"
    _train_folder(tiny_parts, folder, **EDM)
    sample = ["sample", "--checkpoint", str(folder), "--prompt", "a red circle", "--steps", "2"]
    assert main([*sample, "--out", str(tmp_path / "a.png")]) == 0  # the default, ddim, means its own sampler
    assert main([*sample, "--scheduler", "edm_euler", "--out", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    capsys.readouterr()
    assert main([*sample, "--scheduler", "euler", "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "use --scheduler edm_euler" in err and err.count("\n") == 1, err
    sd = tmp_path / "sd"
    _train_folder(tiny_parts, sd)
    assert main(["sample", "--checkpoint", str(sd), "--prompt", "a", "--scheduler", "edm_euler", "--steps", "2",
                 "--out", str(tmp_path / "d.png")]) == 2
    assert "edm_euler is for folders trained with --edm-sigma-data" in capsys.readouterr().err
