"""Training (chapter 08b) and the command line: resume exactness, the demo, and clear errors."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from minisd import train as T
from minisd.__main__ import main
from minisd.data import make_captioned_shapes

SPLITS_SMALL = dict(image_size=32, n_train=64, n_test=8, n_heldout=8)


@pytest.fixture(scope="module")
def tiny_parts(tmp_path_factory):
    "A VAE and a text encoder trained for a few steps: enough to test the UNet stage quickly."
    splits = make_captioned_shapes(**SPLITS_SMALL, seed=0)
    cfg = T.config_for("quick", vae_steps=2, clip={"steps": 2}, unet_steps=6, unet_batch=4, checkpoint_every=2,
                       warmup=2)
    vae, _ = T.train_vae_stage(cfg, splits, "cpu", progress=False)
    text_encoder, tokenizer, _ = T.train_text_stage(cfg, splits, "cpu", progress=False)
    return cfg, splits, vae, text_encoder, tokenizer


def _unet_run(tiny_parts, folder, stop_after=None, resume=False, **overrides):
    cfg, splits, vae, text_encoder, tokenizer = tiny_parts
    cfg = T.replace(cfg, **overrides)
    return T.train_unet_stage(cfg, vae, text_encoder, tokenizer, splits["train"], folder, "cpu", resume=resume,
                              stop_after=stop_after, progress=False)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_parts, tmp_path):
    ema_a, losses_a, _ = _unet_run(tiny_parts, tmp_path / "a")
    state_a = load_file(tmp_path / "a" / T.STATE_NAME)
    _unet_run(tiny_parts, tmp_path / "b", stop_after=3)  # interrupted after step 3 (a checkpoint at 2 and 3)
    assert load_file(tmp_path / "b" / T.STATE_NAME)["losses"].numel() == 3
    ema_b, losses_b, _ = _unet_run(tiny_parts, tmp_path / "b", resume=True)
    assert losses_b == losses_a
    for (k, a), (_, b) in zip(ema_a.state_dict().items(), ema_b.state_dict().items()):
        assert torch.equal(a, b), k
    state_b = load_file(tmp_path / "b" / T.STATE_NAME)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_checkpoint_is_written_atomically(tiny_parts, tmp_path, monkeypatch):
    _unet_run(tiny_parts, tmp_path, stop_after=2)
    before = (tmp_path / T.STATE_NAME).read_bytes()

    def crash(tensors, path, metadata=None):  # the disk fills up half-way through the next checkpoint
        path.write_bytes(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(T, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        _unet_run(tiny_parts, tmp_path, resume=True)
    assert (tmp_path / T.STATE_NAME).read_bytes() == before  # the last good checkpoint is untouched


def test_bf16_autocast_path_runs_on_cpu(tiny_parts, tmp_path):
    "The CUDA training path (bf16 autocast) is the same code; on the CPU it can run too."
    _, losses, metrics = _unet_run(tiny_parts, tmp_path, unet_steps=2, mixed_precision="bf16")
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    with pytest.raises(ValueError, match="mixed_precision must be auto, bf16 or no"):
        _unet_run(tiny_parts, tmp_path / "x", unet_steps=1, mixed_precision="fp8")


def test_lr_schedule_warms_up_then_decays():
    cfg = T.config_for("cpu")
    lrs = [T.lr_at(s, cfg) for s in range(cfg.unet_steps)]
    assert lrs[0] == pytest.approx(cfg.unet_lr / cfg.warmup)
    assert max(lrs) == pytest.approx(cfg.unet_lr, rel=1e-3)
    assert lrs[-1] == pytest.approx(cfg.unet_lr * 0.1, rel=1e-2)


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
        assert set(report["eval"][split]) == {"shape", "colour", "size", "position", "all"}
    assert report["profile"] == "quick" and report["total_seconds"] > 0
    gif = Image.open(demo_dir / "denoising.gif")
    assert gif.n_frames >= T.config_for("quick").eval_steps


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
    (["sample", "--prompt", "x", "--scheduler", "euler"], "invalid choice: 'euler'"),
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
    assert "height must be divisible by the VAE's factor 4; got 30" in capsys.readouterr().err


def test_the_module_runs_as_a_program_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minisd", "sample", "--checkpoint", str(tmp_path), "--prompt", "x"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("minisd sample: error: no checkpoint at")
    help_text = subprocess.run([sys.executable, "-m", "minisd", "demo", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    assert "samples.png" in help_text and "--resume" in help_text
