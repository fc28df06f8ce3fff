"""Reflow (chapter 11e): the straightness measure, the teacher's pairs, the student's objective, and the folder
lookup, on chapter 11c's tiny random SD3 pipeline, offline."""

import json

import pytest
import torch

import minisd.reflow as R
from minisd.flow import FlowMatchEulerDiscreteScheduler
from minisd.flow_training import flow_matching_inputs, mmdit_config, sample_training_times
from minisd.reader import adherence
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


def _teacher_folder(tmp_path):
    "Chapter 11c's tiny random SD3 pipeline saved as a trained folder: (folder, pipe)."
    pipe, folder = minisd_pipeline(), tmp_path / "teacher"
    pipe.save_pretrained(folder)
    (folder / "train_report.json").write_text(json.dumps({"profile": "quick", "config": {"max_sequence_length": 0},
                                                          "transformer_steps": 7}))
    return folder, pipe


def test_cli_reflow_is_train_reflow_on_the_teachers_pairs_and_eval_reads_the_student(tmp_path, monkeypatch, capsys):
    import minisd.data
    from minisd import __main__ as cli
    from minisd.sd3_pipeline import StableDiffusion3Pipeline

    splits = minisd.data.make_captioned_shapes(32, n_train=8, n_test=4, n_heldout=4, seed=0)
    monkeypatch.setattr(minisd.data, "load_captioned_shapes", lambda profile=None, seed=0: splits)
    teacher_folder, teacher = _teacher_folder(tmp_path)
    student_folder = tmp_path / "student"
    argv = ["reflow", str(teacher_folder), "--out", str(student_folder), "--pairs", "5", "--teacher-steps", "2",
            "--guidance", "3", "--steps", "3", "--lr", "1e-2", "--batch-size", "2", "--seed", "4"]
    assert cli.main(argv) == 0
    # the same run by hand, as chapter 11e calls it: pairs from seed + 1, the student's draws from seed
    captions = splits["train"]["caption"][:5]
    noise, latents = R.reflow_pairs(teacher, captions, 2, 3.0, 0, seed=5, progress=False)
    expected, losses = R.train_reflow(mmdit_config("quick"), teacher, captions, noise, latents, steps=3, lr=1e-2,
                                      batch_size=2, warmup=0, seed=4, progress=False)
    student = StableDiffusion3Pipeline.from_pretrained(student_folder)
    saved = student.transformer.state_dict()
    for k, v in expected.transformer.state_dict().items():
        torch.testing.assert_close(saved[k], v, atol=1e-6, rtol=0)
    assert not torch.equal(saved["proj_out.weight"], teacher.transformer.state_dict()["proj_out.weight"])
    report = json.loads((student_folder / "train_report.json").read_text())
    assert report["profile"] == "quick" and report["transformer_steps"] == 7  # the teacher's report, kept
    assert report["reflow"]["pairs"] == 5 and report["reflow"]["first_loss"] == pytest.approx(losses[0], rel=1e-5)
    assert len(json.loads((student_folder / "reflow_losses.json").read_text())) == 3
    capsys.readouterr()
    out = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(student_folder), "--profile", "quick", "--prompts", "3", "--steps", "2",
            "--report", str(out)]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    # --guidance left out: 1 for the student (it learned guided paths; guiding it again overshoots), 4 otherwise
    assert result["steps"] == 2 and result["guidance"] == 1.0 and result["test"]["n"] == result["heldout"]["n"] == 3
    prompts = splits["test"]["caption"][:3]  # eval's images are the pipeline's, from one generator seeded once
    images = student(prompts, 2, 1.0, max_sequence_length=0, generator=torch.Generator().manual_seed(0),
                     progress=False)
    assert result["test"] == json.loads(json.dumps(adherence(images, prompts)))
    assert cli.main([*argv[:2], str(teacher_folder), *argv[3:]]) == 0 and json.loads(out.read_text())["guidance"] == 4.0
    assert cli.main([*argv, "--guidance", "2"]) == 0 and json.loads(out.read_text())["guidance"] == 2.0


def test_cli_reflow_and_sd3_eval_refuse_bad_arguments(tmp_path, monkeypatch, capsys):
    import minisd.data
    from minisd import __main__ as cli

    splits = minisd.data.make_captioned_shapes(32, n_train=8, n_test=4, n_heldout=4, seed=0)
    monkeypatch.setattr(minisd.data, "load_captioned_shapes", lambda profile=None, seed=0: splits)
    teacher_folder, _ = _teacher_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    cases = [(["reflow", str(teacher_folder), "--out", str(teacher_folder)], "another folder"),
             (["reflow", str(tmp_path / "empty"), "--out", str(tmp_path / "s")], "not an SD3 folder"),
             (["reflow", str(teacher_folder), "--out", str(tmp_path / "s"), "--pairs", "9"], "training split has 8"),
             (["eval", "--checkpoint", str(teacher_folder), "--scheduler", "dpm++"], "--scheduler dpm++")]
    for argv, message in cases:
        capsys.readouterr()
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "s" / "model_index.json").exists()
