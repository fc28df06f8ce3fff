"""benchmarks/reference_curves.py: the committed reference curves, made at the quick profile here.

The curves rest on one claim: training the UNet in chunks (`train(..., stop_after=k, resume=True)`,
evaluating between chunks) ends with the weights of one uninterrupted `train()`. This checks it, and
what the script writes.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minisd import train as T
from minisd.data import load_captioned_shapes
from minisd.evaluate import evaluate

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "reference_curves.py"


def load_benchmark(path=SCRIPT):
    "A script of benchmarks/ (not a package) as a module, by its path."
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rc():
    return load_benchmark()


@pytest.fixture(scope="module")
def made(rc, tmp_path_factory):
    "One quick-profile run of the script, with every = 5: points at steps 5, 10 and 12 (unet_steps)."
    tmp = tmp_path_factory.mktemp("curves")
    curves = rc.main(["--profile", "quick", "--every", "5", "--out", str(tmp / "assets"), "--folder",
                      str(tmp / "run"), "--quiet"])
    return curves, tmp


def test_the_script_writes_the_curves(made, capsys):
    curves, tmp = made
    cfg = T.config_for("quick")
    written = json.loads((tmp / "assets" / "reference_curves_quick.json").read_text())
    assert written == json.loads(json.dumps(curves))
    for key in ("losses", "points", "seconds", "command", "argv", "machine", "date", "config", "eval"):
        assert key in written, key
    assert written["command"].startswith("python benchmarks/reference_curves.py --profile quick --every 5")
    assert {"torch", "cpu_model", "torch_threads", "processor"} <= written["machine"].keys()
    assert [p["step"] for p in written["points"]] == [5, 10, cfg.unet_steps]
    times = [p["unet_seconds"] for p in written["points"]]
    assert all(0 < a < b for a, b in zip(times, times[1:]))
    assert written["seconds"]["unet"] == times[-1]
    for p in written["points"]:
        for split in ("test", "heldout"):
            r = p[split]
            assert r["n"] == cfg.eval_prompts and 0 <= r["hits"] <= r["n"] and 0 <= r["abstained"] <= r["n"]
            assert r["low"] <= r["rate"] <= r["high"] and r["rate"] == r["hits"] / r["n"]
    losses = written["losses"]
    assert len(losses["vae"]) == cfg.vae_steps and len(losses["unet"]) == cfg.unet_steps and losses["clip"]
    assert all(math.isfinite(x) for key in ("vae", "clip", "unet") for x in losses[key])
    png = tmp / "assets" / "reference_curves_quick.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chunked_training_equals_one_uninterrupted_run(made, tmp_path):
    curves, tmp = made
    cfg = T.config_for("quick")
    splits = load_captioned_shapes(cfg.profile, seed=cfg.seed)
    pipe, _ = T.train(cfg, tmp_path / "ref", splits=splits, progress=False)
    chunked = T.UNet2DConditionModel.from_pretrained(tmp / "run" / "unet")  # the EMA weights
    for (key, a), (_, b) in zip(pipe.unet.state_dict().items(), chunked.state_dict().items()):
        torch.testing.assert_close(b, a.cpu(), rtol=1e-6, atol=1e-6, msg=key)
    state_ref, state_run = load_file(tmp_path / "ref" / T.STATE_NAME), load_file(tmp / "run" / T.STATE_NAME)
    for key in [k for k in state_ref if k.startswith("unet.")]:  # the trained (not EMA) weights too
        torch.testing.assert_close(state_run[key], state_ref[key], rtol=1e-6, atol=1e-6, msg=key)
    reference_losses = json.loads((tmp_path / "ref" / "unet_losses.json").read_text())
    assert curves["losses"]["unet"] == pytest.approx(reference_losses, rel=1e-6, abs=1e-6)
    # so the last point is what `make demo` reports: the demo's evaluation of the uninterrupted run
    ev = evaluate(pipe, splits, cfg.eval_prompts, cfg.eval_steps, cfg.eval_guidance, cfg.seed, n_diversity=1)
    assert [curves["points"][-1][s]["hits"] for s in ("test", "heldout")] == [ev["test"]["hits"], ev["heldout"]["hits"]]


@pytest.mark.parametrize("argv, message", [
    (["--every", "0"], "argument --every: must be >= 1, got 0"),
    (["--every", "x"], "argument --every: expected an integer >= 1"),
    (["--profile", "quick", "--every", "13"], "argument --every: must be at most the quick profile's unet_steps (12)"),
    (["--profile", "laptop"], "argument --profile: must be one of quick, cpu, gpu"),
])
def test_bad_arguments_get_one_line(rc, argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        rc.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_bad_profile_variable_and_a_used_folder_are_refused(rc, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINISD_PROFILE", "laptop")
    with pytest.raises(SystemExit):
        rc.main([])
    assert "argument --profile: MINISD_PROFILE must be one of" in capsys.readouterr().err
    monkeypatch.setenv("MINISD_PROFILE", "quick")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(SystemExit):
        rc.main(["--folder", str(tmp_path / "used")])
    assert "argument --folder:" in capsys.readouterr().err


def test_checkpoints_end_at_unet_steps(rc):
    assert rc.checkpoints(12, 5) == [5, 10, 12]
    assert rc.checkpoints(12, 4) == [4, 8, 12]
    assert rc.checkpoints(1000, 100) == list(range(100, 1001, 100))
    assert rc.checkpoints(12, 12) == [12]
