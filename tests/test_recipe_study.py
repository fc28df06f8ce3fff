"""benchmarks/recipe_study.py, chapter 14's measurements, made at the quick profile here.

The study's claim is that two runs differ by their recipe alone: the same frozen VAE and text encoder, the same
evaluation, and each recipe's fields (and nothing else) in its TrainConfig. This checks that, and what it writes.
"""

import json
from pathlib import Path

import pytest
from test_reference_curves import load_benchmark

from minisd import train as T
from minisd.recipes import CPU_RECIPE, SD_RECIPE

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "recipe_study.py"


@pytest.fixture(scope="module")
def rs():
    return load_benchmark(SCRIPT)


@pytest.fixture(scope="module")
def made(rs, tmp_path_factory):
    "Two recipes, 4 steps each at the quick profile (batch 64 gets 8), points every 2 steps."
    tmp = tmp_path_factory.mktemp("study")
    out = tmp / "study.json"
    results = rs.main(["--profile", "quick", "--base", str(tmp / "base"), "--recipes", "baseline", "batch_64",
                       "--steps", "4", "--every", "2", "--out", str(out), "--quiet"])
    return results, tmp, out


@pytest.mark.parametrize("profile", ["quick", "cpu"])
def test_each_recipe_sets_its_fields_on_sds_recipe_and_nothing_else(rs, profile):
    base = T.config_for(profile, **SD_RECIPE)  # at the cpu profile, not the profile's default: chapter 14's pair
    assert rs.recipe_config(profile, "cpu_default", 10) == T.replace(T.config_for(profile, **CPU_RECIPE),
                                                                      unet_steps=10)
    for name, (_, fields) in rs.RECIPES.items():
        cfg = rs.recipe_config(profile, name, 10)
        factor = fields.get("steps_factor", 1.0)
        assert cfg.unet_steps == round(10 * factor), name
        changed = {k for k in T.asdict(cfg) if T.asdict(cfg)[k] != T.asdict(base)[k]} - {"unet_steps"}
        assert changed == set(fields) - {"steps_factor"}, name
        if "unet" in fields:  # the UNet's other keys are the profile's
            assert cfg.unet == {**base.unet, **fields["unet"]}


def test_the_study_writes_one_entry_per_recipe_and_seed(made):
    results, tmp, out = made
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(results)) and written["profile"] == "quick"
    assert [(r["recipe"], r["seed"]) for r in written["runs"]] == [("baseline", 0), ("batch_64", 0)]
    baseline, small_batch = written["runs"]
    assert (baseline["unet_steps"], baseline["unet_batch"]) == (4, T.config_for("quick").unet_batch)
    assert (small_batch["unet_steps"], small_batch["unet_batch"]) == (8, 64)
    assert [p["step"] for p in baseline["points"]] == [2, 4]
    assert [p["step"] for p in small_batch["points"]] == [2, 4, 6, 8]
    for run in written["runs"]:
        assert run["argv"].startswith("python benchmarks/recipe_study.py --profile quick")
        assert {"torch", "cpu_model", "torch_threads"} <= run["machine"].keys() and run["date"]
        assert len(run["unet_losses"]) == run["unet_steps"]
        times = [p["unet_seconds"] for p in run["points"]]
        assert all(0 < a < b for a, b in zip(times, times[1:]))
        for p in run["points"]:
            for split in ("test", "heldout"):
                r = p[split]
                assert r["n"] == T.config_for("quick").eval_prompts and r["rate"] == r["hits"] / r["n"]
                assert r["low"] <= r["rate"] <= r["high"]


def test_the_recipes_share_the_frozen_stages_and_a_rerun_replaces_its_entry(rs, made):
    results, tmp, out = made
    vae_before = (tmp / "base" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    again = rs.main(["--profile", "quick", "--base", str(tmp / "base"), "--recipes", "baseline", "--steps", "4",
                     "--every", "4", "--out", str(out), "--quiet"])
    assert (tmp / "base" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == vae_before  # not retrained
    assert [(r["recipe"], r["seed"]) for r in again["runs"]] == [("batch_64", 0), ("baseline", 0)]
    first, rerun = results["runs"][0], again["runs"][1]
    assert rerun["unet_losses"] == pytest.approx(first["unet_losses"], abs=2e-4)  # the same run, rounded to 1e-4
    assert [p["step"] for p in rerun["points"]] == [4]
    assert rerun["points"][0]["heldout"]["hits"] == first["points"][-1]["heldout"]["hits"]


def test_set_changes_a_field_in_every_recipe_and_bad_fields_are_refused(rs, tmp_path, capsys):
    cfg = rs.recipe_config("quick", "min_snr_5", 10, [("warmup", 3), ("seed", 2)])
    assert (cfg.warmup, cfg.seed, cfg.min_snr_gamma) == (3, 2, 5.0)
    for argv, message in ((["--set", "nonsense=1"], "argument --set:"),
                          (["--set", "min_snr_gamma=-1"], "argument --set:"),
                          (["--set", "warmup"], "expected key=value"),
                          (["--recipes", "magic"], "argument --recipes: invalid choice")):
        with pytest.raises(SystemExit) as e:
            rs.main(["--profile", "quick", "--base", str(tmp_path / "none"), "--out", str(tmp_path / "o.json"), *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "none").exists()  # refused before training anything


def test_field_values_parse_as_json(rs):
    assert rs._field("unet_lr=2e-3") == ("unet_lr", 2e-3)
    assert rs._field("timestep_sampling=logit_normal") == ("timestep_sampling", "logit_normal")
    assert rs._field('unet={"block_out_channels": [8, 16]}') == ("unet", {"block_out_channels": [8, 16]})
    assert rs._field("zero_terminal_snr=true") == ("zero_terminal_snr", True)
