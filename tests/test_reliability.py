"""Reliability: every bad input a clear error, hostile folders refused before any large allocation.

The folders here are crafted the way a careless or hostile download would be: a config that asks
for an enormous model, weights of another model, a pickle renamed to `.safetensors`, a link that
points out of the folder, non-finite numbers and wrong types in config.json.
"""

import json
import math
import os
import pickle
import time
import tracemalloc

import pytest
import torch

from minisd.configuration import FrozenDict
from minisd.sampling import DPMSolverMultistepScheduler
from minisd.unet import UNet2DConditionModel
from minisd.vae import AutoencoderKL

UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=[4, 8], layers_per_block=1,
            norm_num_groups=2, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=8, attention_head_dim=2)


@pytest.fixture
def unet_folder(tmp_path):
    return UNet2DConditionModel(**UNET).save_pretrained(tmp_path / "unet")


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def test_a_wrong_type_names_the_key_and_the_file(unet_folder):
    _edit_config(unet_folder, in_channels="four")
    with pytest.raises(TypeError, match=r"'in_channels' in .*unet/config\.json must be a whole number"):
        UNet2DConditionModel.from_pretrained(unet_folder)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_a_config_are_refused(tmp_path, text):
    folder = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4).save_pretrained(tmp_path / "vae")
    raw = (folder / "config.json").read_text().replace('"scaling_factor": 0.18215', f'"scaling_factor": {text}')
    (folder / "config.json").write_text(raw)
    with pytest.raises(TypeError, match="'scaling_factor' .* must be finite"):
        AutoencoderKL.from_pretrained(folder)


def test_an_infinite_default_stays_readable(tmp_path):
    "diffusers writes DPM-Solver's lambda_min_clipped = -inf as -Infinity; that file must still read."
    folder = DPMSolverMultistepScheduler().save_pretrained(tmp_path)
    assert "-Infinity" in (folder / "scheduler_config.json").read_text()
    assert DPMSolverMultistepScheduler.from_pretrained(folder).config.lambda_min_clipped == -math.inf


def test_a_huge_config_is_refused_before_any_allocation(unet_folder):
    _edit_config(unet_folder, block_out_channels=[100_000, 100_000])
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"does not hold the model|asks for \[100000"):
        UNet2DConditionModel.from_pretrained(unet_folder)
    seconds, (_, peak) = time.perf_counter() - t0, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB allocated by Python while refusing"
    assert seconds < 30  # not a speed target: a generous bound that a real allocation of ~1e11 floats would break


def test_weights_of_another_model_are_refused(tmp_path, unet_folder):
    other = UNet2DConditionModel(**{**UNET, "block_out_channels": [8, 8], "norm_num_groups": 4})
    other.save_pretrained(tmp_path / "other")
    os.replace(tmp_path / "other" / "diffusion_pytorch_model.safetensors",
               unet_folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match="does not hold the model|has shape .* but .* asks for"):
        UNet2DConditionModel.from_pretrained(unet_folder)


def test_a_pickle_named_like_weights_is_never_unpickled(unet_folder, monkeypatch):
    ran = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: ran.append(1))
    monkeypatch.setattr(torch, "load", lambda *a, **k: ran.append(1))
    weights = unet_folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(pickle.dumps({"conv_in.weight": [0.0] * 10}))
    with pytest.raises(ValueError, match="is not a safetensors file"):
        UNet2DConditionModel.from_pretrained(unet_folder)
    assert not ran


def test_a_link_out_of_the_folder_is_refused(tmp_path, unet_folder):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    weights = unet_folder / "diffusion_pytorch_model.safetensors"
    os.replace(weights, outside / weights.name)
    weights.symlink_to(outside / weights.name)
    with pytest.raises(ValueError, match="outside"):
        UNet2DConditionModel.from_pretrained(unet_folder)


def test_constructor_arguments_are_checked_too():
    with pytest.raises(TypeError, match="'latent_channels' must be a whole number"):
        AutoencoderKL(latent_channels=-4)
    with pytest.raises(TypeError, match="'use_quant_conv' must be true or false"):
        AutoencoderKL(use_quant_conv="yes")
    assert isinstance(AutoencoderKL(block_out_channels=(8,), norm_num_groups=4).config, FrozenDict)


def test_a_changed_shape_names_the_tensor(unet_folder):
    _edit_config(unet_folder, cross_attention_dim=16)
    with pytest.raises(ValueError, match=r"attn2.to_k.weight has shape \[4, 8\] but .* asks for \[4, 16\]"):
        UNet2DConditionModel.from_pretrained(unet_folder)


# --- the command line and the pipeline, against a tiny random checkpoint --------------------------

import random  # noqa: E402

from minisd.__main__ import main  # noqa: E402
from minisd.pipeline import StableDiffusionPipeline  # noqa: E402
from minisd.sampling import DDIMScheduler  # noqa: E402
from minisd.text_encoder import CLIPTextModel  # noqa: E402
from minisd.tokenizer import CLIPTokenizer  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    "A random pipeline with 32x32 images: the same files make demo writes, built in a second."
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.train(["a red circle in the center", "a small blue square at the top left"] * 4,
                                    num_merges=20)
    text_encoder = CLIPTextModel(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vae = AutoencoderKL(block_out_channels=(4, 4, 4), norm_num_groups=2, down_block_types=["DownEncoderBlock2D"] * 3,
                        up_block_types=["UpDecoderBlock2D"] * 3, sample_size=32)
    unet = UNet2DConditionModel(**UNET)
    pipe = StableDiffusionPipeline(vae, text_encoder, tokenizer, unet, DDIMScheduler(steps_offset=1))
    return pipe.save_pretrained(tmp_path_factory.mktemp("tiny") / "checkpoint")


def _sample(checkpoint, tmp_path, *args):
    return main(["sample", "--checkpoint", str(checkpoint), "--prompt", "a red circle", "--steps", "2",
                 "--out", str(tmp_path / "out.png"), *args])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_guidance_is_refused(checkpoint, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        _sample(checkpoint, tmp_path, f"--guidance={value}")  # = so that argparse reads -inf as a value
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "expected a finite number" in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.filterwarnings("ignore:a text of:UserWarning", "ignore:Tight layout:UserWarning")
def test_the_sample_command_takes_every_sampler_and_guidance_rescale(checkpoint, tmp_path, capsys):
    for name in ("euler", "euler_a", "heun"):
        out = tmp_path / f"{name}.png"
        assert main(["sample", "--checkpoint", str(checkpoint), "--prompt", "a red circle", "--steps", "2",
                     "--scheduler", name, "--guidance-rescale", "0.7", "--out", str(out)]) == 0, capsys.readouterr()
        assert out.is_file()
    with pytest.raises(SystemExit) as exit_info:
        _sample(checkpoint, tmp_path, "--guidance-rescale", "1.5")
    assert exit_info.value.code == 2 and "must be <= 1" in capsys.readouterr().err


def test_a_huge_image_is_refused_at_once_with_the_figure(checkpoint, tmp_path, capsys):
    t0 = time.perf_counter()
    assert _sample(checkpoint, tmp_path, "--height", "1000000") == 2
    err = capsys.readouterr().err.strip()
    assert "need about" in err and "GiB available" in err and len(err.splitlines()) == 1
    assert time.perf_counter() - t0 < 60  # refused before sampling: not a speed target


def test_a_wrong_type_in_a_checkpoint_is_one_clear_line(checkpoint, tmp_path, capsys):
    import shutil
    broken = shutil.copytree(checkpoint, tmp_path / "broken")
    _edit_config(broken / "unet", in_channels="four")
    assert _sample(broken, tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert "'in_channels'" in err and "unet/config.json" in err and len(err.splitlines()) == 1
    assert "not all arguments converted" not in err


def test_a_component_linked_out_of_the_checkpoint_is_refused(checkpoint, tmp_path, capsys):
    import shutil
    linked = shutil.copytree(checkpoint, tmp_path / "linked")
    shutil.move(linked / "vae", tmp_path / "outside_vae")
    (linked / "vae").symlink_to(tmp_path / "outside_vae")
    assert _sample(linked, tmp_path) == 2
    assert "outside" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:a text of:UserWarning", "ignore:Tight layout:UserWarning")
def test_fuzz_the_sample_command(checkpoint, tmp_path, capsys):
    """Seeded random argument lists, valid and not: each succeeds with a finite image or ends in one
    line on stderr with exit code 2; never a traceback."""
    rng = random.Random(0)
    choices = {
        "--steps": ["1", "2", "0", "-3", "x", "1e9", "1001", "2.5"],
        "--guidance": ["0", "1", "4", "7.5", "-1", "nan", "inf", "1e308", "abc"],
        "--height": ["32", "16", "8", "4", "30", "0", "-32", "1000000", "3.2"],
        "--width": ["32", "64", "12", "999999999"],
        "--seed": ["0", "-1", "123456789", "x"],
        "--scheduler": ["ddim", "ddpm", "dpm++", "euler", "euler_a", "heun", "plms", ""],
        "--guidance-rescale": ["0", "0.7", "1", "-0.1", "1.5", "nan", "x"],
        "--prompt": ["a red circle", "", "unicode: 圆形 ü ✓", "word " * 200],
    }
    outcomes = {0: 0, 2: 0}
    for case in range(40):
        argv = ["sample", "--checkpoint", str(checkpoint), "--out", str(tmp_path / f"{case}.png")]
        for flag, values in choices.items():
            if flag == "--prompt" or rng.random() < 0.6:
                argv += [flag, rng.choice(values)]
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own refusals
            code = e.code
        err = capsys.readouterr().err
        assert code in (0, 2), (argv, code, err)
        assert "Traceback" not in err, (argv, err)
        if code == 2:
            said = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
            assert len(said) == 1 and "error" in said[0], (argv, err)  # argparse adds its usage lines above
        else:
            from PIL import Image
            pixels = torch.tensor(list(Image.open(tmp_path / f"{case}.png").convert("L").getdata()))
            assert pixels.numel() > 0
        outcomes[code] += 1
    assert outcomes[0] > 0 and outcomes[2] > 0, outcomes  # the fuzz reached both sides


def test_fuzz_the_pipeline_arguments(checkpoint):
    pipe = StableDiffusionPipeline.from_pretrained(checkpoint)
    rng = random.Random(1)
    values = {
        "num_inference_steps": [1, 2, 0, -1, 2.0, "2", None],
        "guidance_scale": [0.0, 1.0, 3.0, float("nan"), float("inf"), -2.0, True, "3"],
        "height": [None, 32, 16, 30, 0, -8, 10**6, 32.0],
        "eta": [None, 0.0, 1.0, float("nan"), -1.0],
        "guidance_rescale": [0.0, 0.7, 1.0, -0.1, 1.5, float("nan"), True],
    }
    for _ in range(30):
        kwargs = {k: rng.choice(v) for k, v in values.items() if rng.random() < 0.7}
        kwargs.setdefault("num_inference_steps", 2)
        try:
            images = pipe(["a red circle"], generator=torch.Generator().manual_seed(0), progress=False, **kwargs)
        except (ValueError, TypeError, MemoryError, NotImplementedError) as e:
            assert str(e) and "\n" not in str(e).strip(), (kwargs, e)
            continue
        assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1, kwargs


# --- kill -9 in the middle of the UNet stage, then --resume -----------------------------------------

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from safetensors.torch import load_file  # noqa: E402


def _train_process(out):
    env = {**os.environ, "MINISD_PROFILE": "quick", "MINISD_DEVICE": "cpu", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # one thread: the same sums in the same order
    return [sys.executable, "-m", "minisd", "train", "--out", str(out)], env


def test_kill_9_during_the_unet_stage_then_resume_gives_the_same_weights(tmp_path):
    argv, env = _train_process(tmp_path / "whole")
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=600)
    argv, env = _train_process(tmp_path / "killed")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "training_state.safetensors"
    deadline = time.time() + 600
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # at the first UNet checkpoint, mid-stage
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "unet").exists()  # it was killed inside the UNet stage
    resumed = subprocess.run(argv + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = load_file(tmp_path / "whole" / "unet" / "diffusion_pytorch_model.safetensors")
    again = load_file(tmp_path / "killed" / "unet" / "diffusion_pytorch_model.safetensors")
    assert whole.keys() == again.keys()
    for key in whole:
        assert torch.equal(whole[key], again[key]), key
    assert not (tmp_path / "killed" / "minisd.lock").exists()  # the stale lock was taken over and released


def test_non_finite_numbers_are_refused_where_the_default_is_none(tmp_path):
    folder = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4).save_pretrained(tmp_path / "vae")
    _edit_config(folder, shift_factor=float("nan"), latents_mean=[0.0, float("inf")])
    with pytest.raises(TypeError, match="'(shift_factor|latents_mean)' .* must be finite"):
        AutoencoderKL.from_pretrained(folder)


@pytest.mark.filterwarnings("ignore:a text of:UserWarning")
def test_fuzz_the_eval_and_train_commands(checkpoint, tmp_path, capsys):
    "Random eval arguments (cheap: one prompt, one step), and train arguments refused before any training."
    rng = random.Random(2)
    eval_choices = {"--prompts": ["1", "0", "-1", "x"], "--steps": ["1", "0", "nan"],
                    "--guidance": ["1", "inf", "-2"], "--scheduler": ["ddim", "dpm++", "heun", "plms"],
                    "--seed": ["0", "x"],
                    "--profile": ["quick", "laptop"]}
    train_choices = [["--stage", "everything"], ["--profile", "big"],
                     ["--stage", "unet", "--out", str(tmp_path / "none")], ["--out", "/proc/minisd-cannot-write-here"],
                     ["--resume", "--stage", "text", "--profile", "gpu64"]]
    cases = [["eval", "--checkpoint", str(checkpoint), "--report", str(tmp_path / f"{i}.json")]
             + [a for flag, values in eval_choices.items() if rng.random() < 0.5 for a in (flag, rng.choice(values))]
             for i in range(12)] + [["train", *args] for args in train_choices]
    codes = []
    for argv in cases:
        if argv[0] == "eval" and "--profile" not in argv:
            argv += ["--profile", "quick"]
        if argv[0] == "eval" and "--prompts" not in argv:
            argv += ["--prompts", "1"]
        if argv[0] == "eval" and "--steps" not in argv:
            argv += ["--steps", "1"]
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err, (argv, err)
        said = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
        assert code == 0 or (len(said) == 1 and "error" in said[0]), (argv, err)
        codes.append(code)
    assert set(codes) == {0, 2}, codes
