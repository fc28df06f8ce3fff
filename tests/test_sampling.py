"""minisd.sampling (DDIM, DPM-Solver++), minisd.edm (Euler, Heun) and minisd.guidance, against diffusers."""

import inspect
import json

import numpy as np
import pytest
import torch

from minisd.diffusion import DDPMScheduler
from minisd.guidance import classifier_free_guidance, denoise
from minisd.sampling import DDIMScheduler, DPMSolverMultistepScheduler

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


# --- Euler, Euler ancestral and Heun (the EDM variables), Karras sigmas, guidance rescale -----------------

from minisd.edm import (  # noqa: E402
    EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler, karras_sigmas)
from minisd.guidance import rescale_noise_cfg  # noqa: E402

SD_EDM = {k: v for k, v in SD.items() if k != "clip_sample"}  # Euler has no clip_sample key (Heun has)


def compare_sigma_schedulers(ours, ref, num_inference_steps, shape=(2, 3, 4, 4), seed=0, **step_kwargs):
    """Like `compare`, for schedulers in xbar: the model sees scale_model_input(x, t), the first sample is scaled
    by init_noise_sigma; timesteps, sigmas and init_noise_sigma must be diffusers' exactly."""
    ours.set_timesteps(num_inference_steps)
    ref.set_timesteps(num_inference_steps)
    assert torch.equal(ours.timesteps, ref.timesteps), (ours.timesteps, ref.timesteps)
    assert ours.timesteps.dtype == ref.timesteps.dtype
    assert torch.equal(ours.sigmas, ref.sigmas), (ours.sigmas, ref.sigmas)
    assert torch.equal(torch.as_tensor(ours.init_noise_sigma), torch.as_tensor(ref.init_noise_sigma))
    x_ours = x_ref = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * ref.init_noise_sigma
    g_ours, g_ref = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 1)
    ref_kwargs = dict(step_kwargs, **({"generator": g_ref} if "generator" in inspect.signature(ref.step).parameters
                                      else {}))
    worst = 0.0
    for t in ref.timesteps:
        x_ref = ref.step(fake_model(ref.scale_model_input(x_ref, t), t), t, x_ref, **ref_kwargs).prev_sample
        x_ours = ours.step(fake_model(ours.scale_model_input(x_ours, t), t), t, x_ours, generator=g_ours, **step_kwargs)
        worst = max(worst, (x_ours - x_ref).abs().max().item())
    return worst


EULER_CONFIGS = {
    "sd": SD_EDM,
    "sd_karras": dict(SD_EDM, use_karras_sigmas=True),
    "defaults": {},
    "linear_v": dict(prediction_type="v_prediction"),
    "linear_v_karras": dict(prediction_type="v_prediction", use_karras_sigmas=True),
    "cosine_sample": dict(beta_schedule="squaredcos_cap_v2", prediction_type="sample"),
    "zero_snr_v": dict(rescale_betas_zero_snr=True, prediction_type="v_prediction"),
    "karras_range_sigma_min": dict(SD_EDM, use_karras_sigmas=True, sigma_min=0.1, sigma_max=10.0,
                                   final_sigmas_type="sigma_min"),
}


@pytest.mark.parametrize("spacing", SPACINGS)
def test_euler_churn_matches_diffusers(spacing):
    "The EDM sampler's churn: noise added before each step, from the same seeded generator."
    cfg = dict(SD_EDM, timestep_spacing=spacing)
    worst = compare_sigma_schedulers(EulerDiscreteScheduler(**cfg), diffusers.EulerDiscreteScheduler(**cfg), 12,
                                     s_churn=0.8, s_tmin=0.2, s_tmax=6.0, s_noise=1.003)
    assert worst <= 1e-6, worst


ANCESTRAL_CONFIGS = {  # diffusers' Euler ancestral has no Karras option and refuses prediction_type="sample"
    "sd": SD_EDM,
    "defaults": {},
    "linear_v": dict(prediction_type="v_prediction"),
    "cosine": dict(beta_schedule="squaredcos_cap_v2"),
    "zero_snr_v": dict(rescale_betas_zero_snr=True, prediction_type="v_prediction"),
}


HEUN_CONFIGS = {
    "sd": SD,  # Heun takes clip_sample (off in SD's config)
    "sd_karras": dict(SD, use_karras_sigmas=True),
    "defaults": {},  # Heun's own defaults: linear betas 0.00085 .. 0.012
    "linear_v": dict(beta_start=0.0001, beta_end=0.02, prediction_type="v_prediction"),
    "linear_v_karras": dict(beta_start=0.0001, beta_end=0.02, prediction_type="v_prediction", use_karras_sigmas=True),
    "sample_clipped": dict(prediction_type="sample", clip_sample=True, clip_sample_range=0.5),
    "exp_schedule": dict(beta_schedule="exp"),
    "cosine_karras": dict(beta_schedule="squaredcos_cap_v2", use_karras_sigmas=True),
}


# (our class, diffusers' class name, configs, step counts): every config in every spacing
SIGMA_SCHEDULERS = {
    "euler": (EulerDiscreteScheduler, "EulerDiscreteScheduler", EULER_CONFIGS, [1, 4, 25]),
    "euler_a": (EulerAncestralDiscreteScheduler, "EulerAncestralDiscreteScheduler", ANCESTRAL_CONFIGS, [1, 4, 25]),
    "heun": (HeunDiscreteScheduler, "HeunDiscreteScheduler", HEUN_CONFIGS, [1, 4, 12]),
}
SIGMA_CASES = [(kind, name, steps) for kind, (_, _, configs, counts) in SIGMA_SCHEDULERS.items()
               for name in configs for steps in counts]


@pytest.mark.parametrize("kind,name,steps", SIGMA_CASES)
@pytest.mark.parametrize("spacing", SPACINGS)
def test_sigma_schedulers_match_diffusers(kind, name, steps, spacing):
    "Euler, Euler ancestral (same seeded generator on both sides) and Heun: a whole loop within 1e-6 of diffusers."
    cls, ref_name, configs, _ = SIGMA_SCHEDULERS[kind]
    cfg = dict(configs[name], timestep_spacing=spacing)
    ours, ref = cls(**cfg), getattr(diffusers, ref_name)(**cfg)
    worst = compare_sigma_schedulers(ours, ref, steps)
    assert worst <= 1e-6, worst
    if kind == "heun":  # the doubled timesteps: N steps, 2N - 1 model calls
        assert len(ours.timesteps) == 2 * steps - 1 and ours.order == ref.order == 2


def test_sigma_schedulers_before_set_timesteps_and_add_noise():
    "The state right after construction (Heun runs set_timesteps(T) there) and the forward process in xbar."
    for ours, ref in ((EulerDiscreteScheduler(**SD_EDM), diffusers.EulerDiscreteScheduler(**SD_EDM)),
                      (EulerAncestralDiscreteScheduler(**SD_EDM), diffusers.EulerAncestralDiscreteScheduler(**SD_EDM)),
                      (HeunDiscreteScheduler(**SD), diffusers.HeunDiscreteScheduler(**SD))):
        torch.testing.assert_close(ours.sigmas, ref.sigmas, rtol=0, atol=0)
        torch.testing.assert_close(ours.timesteps.float(), ref.timesteps.float(), rtol=0, atol=0)
        torch.testing.assert_close(torch.as_tensor(ours.init_noise_sigma), torch.as_tensor(ref.init_noise_sigma))
        ours.set_timesteps(10)
        ref.set_timesteps(10)
        x0, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
        t = ref.timesteps[[0, 3, 5]]
        torch.testing.assert_close(ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t), rtol=0, atol=0)


def test_karras_sigmas_is_eq_5_and_diffusers():
    s = karras_sigmas(0.03, 14.6, 10)
    assert s[0] == pytest.approx(14.6, rel=1e-12) and s[-1] == pytest.approx(0.03, rel=1e-12)
    assert (s[:-1] > s[1:]).all()
    ramp = torch.linspace(0, 1, 10, dtype=torch.float64).numpy()
    expected = (14.6 ** (1 / 7) + ramp * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7
    assert abs(s - expected).max() < 1e-12
    assert abs(karras_sigmas(1.0, 5.0, 5, rho=1.0) - [5.0, 4.0, 3.0, 2.0, 1.0]).max() < 1e-12  # rho = 1: linear
    assert karras_sigmas(0.5, 2.0, 1).tolist() == pytest.approx([2.0], rel=1e-12)
    ref = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True)
    assert abs(karras_sigmas(0.03, 14.6, 7) - ref._convert_to_karras(np.array([14.6, 0.03]), 7)).max() == 0
    for kwargs, word in ((dict(sigma_min=0.0), "sigma_min"), (dict(sigma_max=float("inf")), "sigma_max"),
                         (dict(sigma_min=3.0, sigma_max=2.0), "sigma_min must be <="), (dict(rho=-1.0), "rho"),
                         (dict(num_inference_steps=0), "num_inference_steps")):
        args = dict(sigma_min=0.1, sigma_max=10.0, num_inference_steps=5) | kwargs
        with pytest.raises(ValueError, match=word):
            karras_sigmas(**args)


def test_sigma_schedulers_refuse_what_they_do_not_build():
    for kwargs, key in ((dict(use_exponential_sigmas=True), "use_exponential_sigmas"),
                        (dict(use_beta_sigmas=True), "use_beta_sigmas"),
                        (dict(interpolation_type="log_linear"), "interpolation_type"),
                        (dict(timestep_type="continuous"), "timestep_type"),
                        (dict(final_sigmas_type="last"), "final_sigmas_type"),
                        (dict(beta_schedule="sigmoid"), "beta_schedule"),
                        (dict(prediction_type="flow"), "prediction_type"),
                        (dict(timestep_spacing="karras"), "timestep_spacing"),
                        (dict(sigma_min=-1.0), "sigma_min")):
        with pytest.raises(ValueError, match=key):
            EulerDiscreteScheduler(**kwargs)
    with pytest.raises(ValueError, match="use_exponential_sigmas"):
        HeunDiscreteScheduler(use_exponential_sigmas=True)
    with pytest.raises(ValueError, match="beta_schedule"):
        EulerAncestralDiscreteScheduler(beta_schedule="exp")  # only Heun has the "exp" schedule
    euler = EulerDiscreteScheduler(**SD_EDM)
    with pytest.raises(ValueError, match="set_timesteps"):
        euler.step(torch.zeros(1, 4), torch.tensor(999.0), torch.zeros(1, 4))
    euler.set_timesteps(5)
    with pytest.raises(ValueError, match="not an integer"):
        euler.step(torch.zeros(1, 4), 999, torch.zeros(1, 4))  # a loop index, most likely
    with pytest.raises(ValueError, match="not one of this scheduler's timesteps"):
        euler.step(torch.zeros(1, 4), torch.tensor(998.5), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="num_inference_steps"):
        euler.set_timesteps(0)


def test_euler_is_ddim_and_euler_ancestral_is_ddim_eta_one():
    """With the same (trailing) timesteps and alpha_bar = 1 after the last step, Euler in (xbar, sigma) is DDIM's
    eta = 0 sampler and Euler ancestral, with the same generator, DDIM's eta = 1 sampler (x = sqrt(abar) xbar)."""
    trailing = dict(SD_EDM, timestep_spacing="trailing")
    for eta, cls in ((0.0, EulerDiscreteScheduler), (1.0, EulerAncestralDiscreteScheduler)):
        ddim, edm = DDIMScheduler(**trailing, clip_sample=False, set_alpha_to_one=True), cls(**trailing)
        ddim.set_timesteps(10)
        edm.set_timesteps(10)
        assert torch.equal(ddim.timesteps.float(), edm.timesteps)
        x = x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        xbar = x_T * (edm.sigmas[0] ** 2 + 1) ** 0.5
        g_a, g_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        for t in ddim.timesteps:
            x = ddim.step(fake_model(x, t), t, x, eta=eta, generator=g_a)
            xbar = edm.step(fake_model(edm.scale_model_input(xbar, t.float()), t), t.float(), xbar, generator=g_b)
        torch.testing.assert_close(xbar, x, rtol=1e-4, atol=1e-4)


def test_sigma_schedulers_swap_via_config_and_files(tmp_path):
    ddpm = DDPMScheduler(**SD)
    ref_ddpm = diffusers.DDPMScheduler(**SD)
    for cls in (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler):
        ours, ref_cls = cls.from_config(ddpm.config), getattr(diffusers, cls.__name__)
        ref = ref_cls.from_config(ref_ddpm.config)
        assert ours.config.steps_offset == 1 and ours.config.beta_schedule == "scaled_linear"
        assert ours.config.timestep_spacing == ref.config.timestep_spacing == "linspace"  # DDPM's was a default
        keys = set(inspect.signature(ref_cls.__init__).parameters) - {"self"}  # diffusers' config keeps extras
        assert {k: v for k, v in ours.config.items() if not k.startswith("_")} == {k: ref.config[k] for k in keys}
        assert compare_sigma_schedulers(ours, ref, 8) <= 1e-6
        ours.save_pretrained(tmp_path / cls.__name__)  # diffusers reads our file, and we read theirs
        assert compare_sigma_schedulers(cls.from_pretrained(tmp_path / cls.__name__),
                                        ref_cls.from_pretrained(tmp_path / cls.__name__), 8) <= 1e-6
        ref_cls(**dict(SD_EDM, timestep_spacing="trailing")).save_pretrained(tmp_path / "theirs" / cls.__name__)
        assert cls.from_pretrained(tmp_path / "theirs" / cls.__name__).config.timestep_spacing == "trailing"
    karras = EulerDiscreteScheduler(**SD_EDM, use_karras_sigmas=True)
    assert HeunDiscreteScheduler.from_config(karras.config).config.use_karras_sigmas is True
    with pytest.raises(NotImplementedError, match="use_karras_sigmas"):  # DPM-Solver++ here has no Karras option
        DPMSolverMultistepScheduler.from_config(karras.config)


def test_rescale_noise_cfg_matches_diffusers_and_denoise():
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg as ref_rescale

    u, c = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    guided = classifier_free_guidance(u, c, 7.5)
    for phi in (0.0, 0.3, 0.7, 1.0):
        torch.testing.assert_close(rescale_noise_cfg(guided, c, phi), ref_rescale(guided, c, phi), rtol=0, atol=0)
    torch.testing.assert_close(rescale_noise_cfg(guided, c, 1.0).flatten(1).std(1), c.flatten(1).std(1))
    assert torch.equal(rescale_noise_cfg(guided, c, 0.0), guided)

    def model(x, t, states):
        return fake_model(x, t) + states.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    cond, uncond = torch.randn(2, 5, 8), torch.zeros(1, 5, 8)
    latents = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    plain = denoise(model, DDIMScheduler(**SD), latents.shape, cond, uncond, guidance_scale=3.0,
                    num_inference_steps=6, latents=latents)
    assert torch.equal(plain, denoise(model, DDIMScheduler(**SD), latents.shape, cond, uncond, guidance_scale=3.0,
                                      num_inference_steps=6, latents=latents, guidance_rescale=0.0))
    # guidance rescale, Euler in xbar with leading spacing (init_noise_sigma depends on the timesteps): the loop of
    # diffusers' StableDiffusionPipeline, by hand
    cfg = dict(SD_EDM, timestep_spacing="leading")
    got = denoise(model, EulerDiscreteScheduler(**cfg), latents.shape, cond, uncond, guidance_scale=3.0,
                  num_inference_steps=6, latents=latents, guidance_rescale=0.7)
    ref = diffusers.EulerDiscreteScheduler(**cfg)
    ref.set_timesteps(6)
    x = latents * ref.init_noise_sigma
    for t in ref.timesteps:
        x_in = ref.scale_model_input(torch.cat([x, x]), t)
        e_u, e_c = model(x_in, t, torch.cat([uncond.expand_as(cond), cond])).chunk(2)
        x = ref.step(ref_rescale(e_u + 3.0 * (e_c - e_u), e_c, 0.7), t, x).prev_sample
    torch.testing.assert_close(got, x, rtol=0, atol=1e-5)
    for bad in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="guidance_rescale"):
            denoise(model, DDIMScheduler(), latents.shape, cond, uncond, guidance_scale=2.0, num_inference_steps=2,
                    guidance_rescale=bad)


def test_dpm_solver_2m_update_is_the_schedulers_step():
    "The exported 2M update, called by hand with the scheduler's sigmas, is what the scheduler does (SD's config)."
    from minisd.sampling import dpm_solver_pp_2m_update

    sched = DPMSolverMultistepScheduler(**SD_DPM, lower_order_final=False)
    sched.set_timesteps(20)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x_hand, prev = x.clone(), None
    for i, t in enumerate(sched.timesteps):
        eps = fake_model(x, t)
        alpha = 1 / (sched.sigmas[i] ** 2 + 1) ** 0.5
        x0 = (x_hand - sched.sigmas[i] * alpha * fake_model(x_hand, t)) / alpha
        x_hand = dpm_solver_pp_2m_update(x_hand, x0, prev, sched.sigmas[i - 1] if prev is not None else None,
                                         sched.sigmas[i], sched.sigmas[i + 1])
        prev = x0 if i < len(sched.timesteps) - 2 else None  # the last step, to sigma = 0, is first order
        x = sched.step(eps, t, x)
    torch.testing.assert_close(x_hand, x, rtol=0, atol=1e-6)
