"""minisd.sampling: DDIMScheduler, DPMSolverMultistepScheduler and guidance, against diffusers."""

import json

import pytest
import torch

from minisd.diffusion import DDPMScheduler
from minisd.sampling import DDIMScheduler, DPMSolverMultistepScheduler, classifier_free_guidance, denoise

diffusers = pytest.importorskip("diffusers")

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, clip_sample=False)
SPACINGS = ("leading", "trailing", "linspace")


def fake_model(sample, t):
    "A deterministic stand-in for a trained network: any smooth function of (x_t, t)."
    t = float(t)
    return 0.6 * sample * torch.cos(torch.tensor(t / 300.0)) + 0.3 * torch.sin(3 * sample + t / 100.0)


def compare(ours, ref, num_inference_steps, shape=(2, 3, 4, 4), seed=0, **step_kwargs):
    """Run both schedulers free from the same noise, same generator seed; return the largest
    difference over all intermediate samples."""
    ours.set_timesteps(num_inference_steps)
    ref.set_timesteps(num_inference_steps)
    assert torch.equal(ours.timesteps, ref.timesteps), (ours.timesteps, ref.timesteps)
    x_ours = x_ref = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    g_ours, g_ref = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 1)
    worst = 0.0
    for t in ref.timesteps:
        x_ref = ref.step(fake_model(x_ref, t), t, x_ref, generator=g_ref, **step_kwargs).prev_sample
        x_ours = ours.step(fake_model(x_ours, t), t, x_ours, generator=g_ours, **step_kwargs)
        worst = max(worst, (x_ours - x_ref).abs().max().item())
    return worst


DDIM_CONFIGS = {
    "sd": dict(SD, set_alpha_to_one=False),
    "defaults": {},
    "v_cosine": dict(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=False),
    "sample_clip": dict(prediction_type="sample", clip_sample_range=0.8),
    "threshold": dict(thresholding=True, sample_max_value=2.0, set_alpha_to_one=False),
}


@pytest.mark.parametrize("name", list(DDIM_CONFIGS))
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 10, 25])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(name, spacing, steps, eta):
    cfg = dict(DDIM_CONFIGS[name], timestep_spacing=spacing)
    worst = compare(DDIMScheduler(**cfg), diffusers.DDIMScheduler(**cfg), steps, eta=eta)
    assert worst <= 1e-6, worst


def test_ddim_clipped_model_output_and_variance_noise():
    cfg = dict(DDIM_CONFIGS["sample_clip"], prediction_type="epsilon")
    ours, ref = DDIMScheduler(**cfg), diffusers.DDIMScheduler(**cfg)
    ours.set_timesteps(10)
    ref.set_timesteps(10)
    x = 3 * torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    for t in ref.timesteps[:4]:
        a = ours.step(fake_model(x, t), t, x, eta=0.5, use_clipped_model_output=True, variance_noise=z)
        b = ref.step(fake_model(x, t), t, x, eta=0.5, use_clipped_model_output=True, variance_noise=z).prev_sample
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="set_timesteps"):
        DDIMScheduler().step(x, 10, x)


SD_DPM = {k: v for k, v in SD.items() if k != "clip_sample"}  # the solver has no clip_sample key
DPM_CONFIGS = {
    "defaults": {},
    "sd": dict(SD_DPM),
    "sd_leading": dict(SD_DPM, timestep_spacing="leading"),
    "sd_trailing": dict(SD_DPM, timestep_spacing="trailing"),
    "heun_v": dict(solver_type="heun", prediction_type="v_prediction"),
    "order1": dict(solver_order=1),
    "order3": dict(solver_order=3),
    "order3_long": dict(solver_order=3, lower_order_final=False, final_sigmas_type="sigma_min"),
    "no_lower_final_sigma_min": dict(SD_DPM, lower_order_final=False, final_sigmas_type="sigma_min"),
    "euler_at_final_sample": dict(euler_at_final=True, prediction_type="sample", final_sigmas_type="sigma_min"),
    "lambda_clipped_cosine": dict(beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1),
    "threshold_zero_snr": dict(thresholding=True, rescale_betas_zero_snr=True, prediction_type="v_prediction"),
    "sde_midpoint": dict(SD_DPM, algorithm_type="sde-dpmsolver++"),
    "sde_heun_order3": dict(algorithm_type="sde-dpmsolver++", solver_type="heun", solver_order=3),
}


@pytest.mark.parametrize("name", list(DPM_CONFIGS))
@pytest.mark.parametrize("steps", [1, 2, 5, 20])
def test_dpm_solver_matches_diffusers(name, steps):
    cfg = DPM_CONFIGS[name]
    ours, ref = DPMSolverMultistepScheduler(**cfg), diffusers.DPMSolverMultistepScheduler(**cfg)
    worst = compare(ours, ref, steps)
    torch.testing.assert_close(ours.sigmas, ref.sigmas, rtol=0, atol=0)
    assert worst <= 1e-6, worst


def test_schedulers_swap_via_config(tmp_path):
    ddpm = DDPMScheduler(**SD)
    ddim = DDIMScheduler.from_config(ddpm.config)
    assert ddim.config.steps_offset == 1 and ddim.config.beta_schedule == "scaled_linear"
    assert ddim.config.set_alpha_to_one is True  # DDIM's own default: DDPM had no such key
    dpm = DPMSolverMultistepScheduler.from_config(ddpm.config)
    # DDPM's default spacing (leading) was a default, so the solver keeps its own (linspace), as in diffusers
    ref = diffusers.DPMSolverMultistepScheduler.from_config(diffusers.DDPMScheduler(**SD).config)
    assert dpm.config.timestep_spacing == ref.config.timestep_spacing == "linspace"
    for key, value in ref.config.items():
        if key in dpm.config and not key.startswith("_"):
            assert dpm.config[key] == value, key
    # diffusers reads our saved configs and we read theirs
    for sched, ref_cls in [(ddim, diffusers.DDIMScheduler), (dpm, diffusers.DPMSolverMultistepScheduler)]:
        sched.save_pretrained(tmp_path / type(sched).__name__)
        theirs = ref_cls.from_pretrained(tmp_path / type(sched).__name__)
        assert json.loads((tmp_path / type(sched).__name__ / "scheduler_config.json").read_text())["_class_name"] \
            == type(sched).__name__
        assert compare(type(sched).from_pretrained(tmp_path / type(sched).__name__), theirs, 8) <= 1e-6
    diffusers.DPMSolverMultistepScheduler(solver_order=3).save_pretrained(tmp_path / "theirs")
    assert DPMSolverMultistepScheduler.from_pretrained(tmp_path / "theirs").config.solver_order == 3
    with pytest.raises(NotImplementedError, match="use_karras_sigmas"):
        DPMSolverMultistepScheduler.from_config({"use_karras_sigmas": True})
    with pytest.raises(ValueError, match="algorithm_type"):
        DPMSolverMultistepScheduler(algorithm_type="deis")


def test_ddim_eta_one_is_ddpm_and_dpm_order_one_is_ddim():
    "DDIM with eta = 1 on consecutive timesteps is DDPM's ancestral step; first-order DPM-Solver++ is DDIM."
    ddpm, ddim = DDPMScheduler(**SD), DDIMScheduler(**SD, set_alpha_to_one=False)
    ddpm.set_timesteps(20)
    ddim.set_timesteps(20)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for t in ddim.timesteps[:-1]:  # the last step differs: DDPM ends at alpha_bar = 1
        eps = fake_model(x, t)
        a = ddpm.step(eps, t, x, generator=torch.Generator().manual_seed(int(t)))
        b = ddim.step(eps, t, x, eta=1.0, generator=torch.Generator().manual_seed(int(t)))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    ddim0 = DDIMScheduler(**dict(SD, timestep_spacing="trailing"))
    dpm1 = DPMSolverMultistepScheduler(**dict(SD_DPM, timestep_spacing="trailing", solver_order=1))
    ddim0.set_timesteps(10)
    dpm1.set_timesteps(10)
    x_a = x_b = x
    for t in ddim0.timesteps:
        x_a, x_b = ddim0.step(fake_model(x_a, t), t, x_a), dpm1.step(fake_model(x_b, t), t, x_b)
    torch.testing.assert_close(x_a, x_b, rtol=1e-4, atol=1e-4)


def test_guidance_and_denoise_loop_match_diffusers_pipeline_arithmetic():
    u, c = torch.randn(2, 3), torch.randn(2, 3)
    torch.testing.assert_close(classifier_free_guidance(u, c, 1.0), c)
    torch.testing.assert_close(classifier_free_guidance(u, c, 0.0), u)
    torch.testing.assert_close(classifier_free_guidance(u, c, 7.5), u + 7.5 * (c - u))

    def model(x, t, states):  # a "network" that reads its condition
        return fake_model(x, t) + states.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    cond, uncond = torch.randn(2, 5, 8), torch.zeros(1, 5, 8)
    latents = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    got = denoise(model, DDIMScheduler(**SD), latents.shape, cond, uncond, guidance_scale=3.0,
                  num_inference_steps=6, latents=latents)
    ref = diffusers.DDIMScheduler(**SD)  # the loop of diffusers' StableDiffusionPipeline, by hand
    ref.set_timesteps(6)
    x = latents
    for t in ref.timesteps:
        e_u, e_c = model(torch.cat([x, x]), t, torch.cat([uncond.expand_as(cond), cond])).chunk(2)
        x = ref.step(e_u + 3.0 * (e_c - e_u), t, x).prev_sample
    torch.testing.assert_close(got, x, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="uncond_hidden_states"):
        denoise(model, DDIMScheduler(), latents.shape, cond, guidance_scale=2.0, num_inference_steps=2)
