"""Reflow (chapter 11e): the straightness measure, the teacher's pairs, the student's objective, and the folder
lookup, on chapter 11c's tiny random SD3 pipeline, offline."""

import json

import pytest
import torch

import minisd.reflow as R
from minisd.flow import FlowMatchEulerDiscreteScheduler
from minisd.flow_training import flow_matching_inputs, mmdit_config, sample_training_times
from test_sd3_pipeline import PROMPTS, minisd_pipeline

CAPTIONS = [*PROMPTS, "a white square in the center", "a large red circle in the top left"]


def _noise(n, pipe, seed):
    c = pipe.transformer.config
    return torch.randn((n, c.in_channels, c.sample_size, c.sample_size), generator=torch.Generator().manual_seed(seed))


def test_one_euler_step_is_straight_and_more_steps_bend():
    pipe = minisd_pipeline()
    assert R.straightness(pipe, PROMPTS, num_inference_steps=1, guidance_scale=3.0) == pytest.approx(0, abs=1e-10)
    bend = R.straightness(pipe, PROMPTS, num_inference_steps=4, guidance_scale=3.0, seed=2)
    path = []  # the same measure written out from the sampler's own trajectory
    noise = _noise(2, pipe, 2)
    pipe(PROMPTS, 4, 3.0, latents=noise, output_type="latent", max_sequence_length=0,
         callback=lambda i, t, x: path.append(x), progress=False)
    sigmas = pipe.scheduler.sigmas
    chord = (noise - path[-1]).flatten(1)
    expected = 0
    for i, (start, end) in enumerate(zip([noise, *path[:-1]], path)):
        dt = sigmas[i] - sigmas[i + 1]
        expected = expected + dt * ((start - end).flatten(1) / dt - chord).square().sum(1)
    assert bend == pytest.approx((expected / chord.square().sum(1)).mean().item(), rel=1e-5) and bend > 0


def test_reflow_pairs_are_the_samplers_ends_whatever_the_batch():
    pipe = minisd_pipeline()
    noise, latents = R.reflow_pairs(pipe, CAPTIONS, num_inference_steps=3, guidance_scale=2.0, seed=4,
                                    batch_size=3, progress=False)
    torch.testing.assert_close(noise, _noise(4, pipe, 4))
    expected = pipe(CAPTIONS, 3, 2.0, latents=noise, output_type="latent", max_sequence_length=0,
                    progress=False)
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=0)
    again = R.reflow_pairs(pipe, CAPTIONS, num_inference_steps=3, guidance_scale=2.0, seed=4, batch_size=64,
                           progress=False)
    torch.testing.assert_close(again[1], latents, atol=1e-5, rtol=0)


def test_the_student_regresses_the_straight_line_between_each_pair():
    pipe, cfg = minisd_pipeline(), mmdit_config("quick")
    noise, latents = _noise(4, pipe, 7), _noise(4, pipe, 8)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    frozen, losses = R.train_reflow(cfg, pipe, CAPTIONS, noise, latents, steps=1, lr=0.0, batch_size=3, seed=5,
                                    progress=False)
    # the first loss by hand: the same draws, the coupled noise (not a fresh one), the velocity x_1 - x_0
    g = torch.Generator().manual_seed(5)
    idx = torch.randint(0, 4, (3,), generator=g)
    timesteps, sigmas = sample_training_times(FlowMatchEulerDiscreteScheduler(shift=cfg.shift), 3, "uniform",
                                              generator=g)
    x_t, target = flow_matching_inputs(latents[idx], noise[idx], sigmas)
    torch.testing.assert_close(target, noise[idx] - latents[idx])
    embeds, pooled = pipe.encode_prompt([CAPTIONS[i] for i in idx], cfg.max_sequence_length)
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(pipe.transformer(x_t, embeds, pooled, timesteps), target)
    assert losses[0] == pytest.approx(expected.item(), rel=1e-5)
    assert all(torch.equal(v, frozen.transformer.state_dict()[k]) for k, v in before.items())  # lr 0: unchanged
    student, losses = R.train_reflow(cfg, pipe, CAPTIONS, noise, latents, steps=8, lr=1e-2, batch_size=4,
                                     warmup=1, progress=False)
    assert sum(losses[-2:]) < sum(losses[:2])  # it learns the pairs
    assert all(torch.equal(v, pipe.transformer.state_dict()[k]) for k, v in before.items())  # the teacher is kept
    assert student.vae is pipe.vae and student.transformer is not pipe.transformer
    with pytest.raises(ValueError, match="pair up"):
        R.train_reflow(cfg, pipe, CAPTIONS[:3], noise, latents, steps=1, progress=False)


def test_flow_checkpoint_uses_a_finished_folder_and_trains_a_missing_one(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(R, "train_mmdit", lambda cfg, folder, **kw: calls.append((cfg.profile, folder)))
    folder = R.flow_checkpoint(tmp_path, "quick")
    assert folder == tmp_path / "11d_checkpoint_quick" and calls == [("quick", folder)]
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "train_report.json").write_text(json.dumps({"profile": "quick"}))
    assert R.flow_checkpoint(tmp_path, "quick") == folder and len(calls) == 1
