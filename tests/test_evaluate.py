"""Sampling and evaluation (chapter 08c), the main job and the command line: `generate` leaves the
pipeline it is given as it was, the demo writes every output, and bad input ends in one clear line.
"""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from minisd import evaluate as E
from minisd import train as T
from minisd.__main__ import main
from minisd.pipeline import StableDiffusionPipeline, get_scheduler


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--profile", "quick", "--out", str(out)]) == 0
    return out


def test_demo_writes_every_output(demo_dir):
    for name in ("samples.png", "denoising.gif", "report.json", "sweep.png", "checkpoint/model_index.json",
                 "checkpoint/unet/diffusion_pytorch_model.safetensors", f"checkpoint/{T.STATE_NAME}"):
        assert (demo_dir / name).is_file(), name
    report = json.loads((demo_dir / "report.json").read_text())
    for split in ("test", "heldout"):
        assert set(report["eval"][split]) == {"shape", "colour", "size", "position", "all", "n", "hits", "abstained"}
        assert report["eval"][split]["hits"] == round(report["eval"][split]["all"] * report["eval"][split]["n"])
    sweep = report["sweep"]  # every rate of the sweep with its count, for the plot's intervals
    assert all(len(h) == len(sweep["guidance"]) and all(0 <= k <= sweep["n"] for k in h)
               for h in sweep["hits_by_steps"].values())
    assert report["profile"] == "quick" and report["total_seconds"] > 0
    gif = Image.open(demo_dir / "denoising.gif")
    assert gif.n_frames >= T.config_for("quick").eval_steps


def test_generate_leaves_the_pipeline_as_it_was(demo_dir):
    pipe = StableDiffusionPipeline.from_pretrained(demo_dir / "checkpoint")
    scheduler, config = pipe.scheduler, dict(pipe.scheduler.config)
    prompts = ["a red circle in the center", "a small blue square in the top left"]
    images = E.generate(pipe, prompts, steps=3, guidance=2.0, seed=1, scheduler="dpm++")
    assert pipe.scheduler is scheduler and dict(pipe.scheduler.config) == config
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    # the images are those of the caller's pipeline with its scheduler swapped, which is what generate used to do
    pipe.scheduler = get_scheduler("dpm++", scheduler.config)
    expected = pipe(prompts, num_inference_steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(1),
                    progress=False)
    assert torch.equal(images, expected)


def test_sample_and_eval_commands(demo_dir, capsys):
    png = demo_dir / "two.png"
    assert main(["sample", "--checkpoint", str(demo_dir / "checkpoint"), "--prompt", "a red circle in the center",
                 "--prompt", "a small blue square in the top left", "--steps", "2", "--scheduler", "dpm++",
                 "--out", str(png)]) == 0
    assert Image.open(png).format == "PNG"
    report = demo_dir / "eval.json"
    assert main(["eval", "--checkpoint", str(demo_dir / "checkpoint"), "--profile", "quick", "--prompts", "2",
                 "--steps", "2", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["test"]["all"] >= 0


@pytest.mark.parametrize("argv, message", [
    (["sample", "--prompt", "x", "--scheduler", "plms"], "invalid choice: 'plms'"),
    (["sample", "--prompt", "x", "--steps", "0"], "must be >= 1, got 0"),
    (["sample", "--prompt", "x", "--guidance", "-1"], "must be >= 0, got -1.0"),
    (["train", "--profile", "laptop"], "must be one of quick, cpu, gpu"),
])
def test_bad_arguments_get_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_corrupt_checkpoint_and_bad_sizes(demo_dir, tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "nothing"), "--prompt", "x"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt"
    subprocess.run(["cp", "-r", str(demo_dir / "checkpoint"), str(corrupt)], check=True)
    (corrupt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    assert main(["sample", "--checkpoint", str(corrupt), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {corrupt} could not be read" in err and len(err.strip().splitlines()) == 1
    assert main(["sample", "--checkpoint", str(demo_dir / "checkpoint"), "--prompt", "x", "--height", "30",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "height must be a positive multiple of the VAE's factor 4; got 30" in capsys.readouterr().err


def test_the_module_runs_as_a_program_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minisd", "sample", "--checkpoint", str(tmp_path), "--prompt", "x"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("minisd sample: error: no checkpoint at")
    help_text = subprocess.run([sys.executable, "-m", "minisd", "demo", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    assert "samples.png" in help_text and "--resume" in help_text


def test_bench_real_scores_every_task_and_writes_a_row(tmp_path, capsys):
    out, board = tmp_path / "bench.json", tmp_path / "board.md"
    assert main(["bench", "real", "--profile", "quick", "--out", str(out), "--leaderboard", str(board)]) == 0
    report = json.loads(out.read_text())
    assert report["command"] == "python -m minisd bench real --profile quick"
    assert all(s["hits"] >= 0.99 * s["n"] for t, s in report["tasks"].items() if t != "overall")
    assert report["distribution"]["n"] > 0 and "real floor" in capsys.readouterr().out
    lines = board.read_text().splitlines()
    assert lines[0].startswith("| row | command |") and lines[-1] == report["row"] and len(lines) == 3


def test_bench_rejects_a_bad_checkpoint_and_bad_arguments(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nothing"), "--profile", "quick", "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minisd bench: error: no checkpoint at") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.json").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "real", "--images-per-prompt", "0"])
    assert exit_info.value.code == 2 and "must be >= 1, got 0" in capsys.readouterr().err


def test_main_job_checkpoint_finds_the_first_folder_trained_under_the_profile(tmp_path, monkeypatch):
    def fake(name, profile):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model_index.json").write_text("{}")
        (folder / "train_report.json").write_text(json.dumps({"profile": profile}))

    trained = []
    monkeypatch.setattr(E, "train", lambda cfg, folder, **kw: trained.append((cfg.profile, folder)))
    fake("08b_checkpoint_quick", "cpu")  # a quick-named folder that another profile trained: skipped
    fake("checkpoint", "quick")
    fake("08c_checkpoint_quick", "quick")
    assert E.main_job_checkpoint(tmp_path, "quick") == tmp_path / "checkpoint" and not trained
    assert not E.trained_under(tmp_path / "08b_checkpoint_quick", "quick")
    assert E.trained_under(tmp_path / "08b_checkpoint_quick", "cpu")
    assert E.main_job_checkpoint(tmp_path / "empty", "quick") == tmp_path / "empty" / "08c_checkpoint_quick"
    assert trained == [("quick", tmp_path / "empty" / "08c_checkpoint_quick")]
