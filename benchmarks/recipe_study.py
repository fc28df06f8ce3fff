"""Chapter 14's recipe study: training recipes side by side, adherence against minutes of UNet training.

    python benchmarks/recipe_study.py --profile cpu --base BASE --recipes baseline min_snr_5 --seeds 0 1

Every recipe trains the UNet stage only, on the same frozen VAE and mini CLIP text encoder (the folder BASE;
`python -m minisd train --stage vae --out BASE` and `--stage text` make it, or this script does when BASE has
none), so the curves differ by the recipe alone. A recipe is a set of `TrainConfig` fields set on SD's recipe
(`SD_RECIPE`, the `baseline`; RECIPES below: the flags of chapters 08b_recipes and 08b_recipes_edm, the learning
rate, warm-up, batch, EMA and model size); --set adds fields to all of them for a one-off trial. Each run trains
in exact-resume chunks of --every steps, as benchmarks/reference_curves.py does, and after each chunk measures
all-attribute adherence on the same 96 test and 96 held-out prompts (20 DDIM steps, or EDM's Euler for `edm`;
guidance 4, sampling seed 0, whatever the training seed), kept as hits / n / abstained with Wilson 95%
intervals. "unet_seconds" is the training time an uninterrupted run spends to get there (the one-off encoding of
the training set included, evaluation and chunk reloading left out).

Results accumulate in --out (default assets/recipe_study_<profile>.json), one entry per (recipe, seed), each
with its command, machine and date; a rerun of the same pair replaces its entry. Chapter 14 reads that file.
"""

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from minisd import train as T
from minisd.__main__ import _positive_int, _profile
from minisd.data import load_captioned_shapes
from minisd.recipes import CPU_RECIPE, SD_RECIPE

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script whose measuring this one shares
from reference_curves import _machine, _Parser, parse_with_profile, train_in_chunks  # noqa: E402

SCRIPT = "benchmarks/recipe_study.py"
SMALL_UNET = {"block_out_channels": [32, 64], "norm_num_groups": 16}  # a quarter of the cpu UNet's multiply-adds

# name -> (what it changes, the TrainConfig fields it sets; "unet" entries update the profile's UNet config)
RECIPES = {
    "baseline": ("SD's recipe (peak lr 1e-3, the plain noise MSE): the cpu profile's default before this study", {}),
    "cpu_default": ("the cpu profile's default since this study: min-SNR 5, peak lr 2e-3", CPU_RECIPE),
    "min_snr_5": ("min-SNR-gamma weighting, gamma 5", {"min_snr_gamma": 5.0}),
    "v_zero_snr": ("v-prediction with zero terminal SNR and trailing steps",
                   {"prediction_type": "v_prediction", "zero_terminal_snr": True}),
    "v_pred": ("v-prediction, the ordinary schedule", {"prediction_type": "v_prediction"}),
    "logit_normal": ("logit-normal timesteps (0, 1)", {"timestep_sampling": "logit_normal"}),
    "offset_noise": ("offset noise 0.1", {"offset_noise": 0.1}),
    "edm": ("EDM's preconditioning and log-normal sigma (sigma_data 1), sampled by EDM Euler",
            {"edm_sigma_data": 1.0}),
    "lr_2e-3": ("peak learning rate 2e-3 (SD's 1e-3)", {"unet_lr": 2e-3}),
    "lr_4e-3": ("peak learning rate 4e-3", {"unet_lr": 4e-3}),
    "no_ema": ("sampling from the raw weights (no EMA)", {"ema_decay": 0.0}),
    "ema_0.99": ("EMA decay capped at 0.99", {"ema_decay": 0.99}),
    "batch_64": ("batch 64, twice the steps", {"unet_batch": 64, "steps_factor": 2.0}),
    "batch_32": ("batch 32, four times the steps", {"unet_batch": 32, "steps_factor": 4.0}),
    "small_unet": ("UNet channels (32, 64), twice the steps", {"unet": SMALL_UNET, "steps_factor": 2.0}),
}


def _field(text):
    "key=value with a JSON value (a bare word is a string): one TrainConfig field for --set."
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser():
    p = _Parser(prog=SCRIPT, description=__doc__.splitlines()[0])
    p.add_argument("--profile", type=_profile, help="quick, cpu or gpu (default: MINISD_PROFILE, else cpu)")
    p.add_argument("--base", type=Path, required=True,
                   help="folder with the trained vae/, text_encoder/ and tokenizer/ (trained there when missing)")
    p.add_argument("--recipes", nargs="+", default=["baseline"], choices=sorted(RECIPES), metavar="NAME",
                   help=f"recipes to train, among: {', '.join(RECIPES)} (default: baseline)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default: 0)")
    p.add_argument("--steps", type=_positive_int,
                   help="UNet steps of a recipe at the profile's batch (default: half the profile's unet_steps); "
                        "a recipe with steps_factor scales them")
    p.add_argument("--every", type=_positive_int, help="steps between adherence points (default: steps / 5)")
    p.add_argument("--set", dest="fields", nargs="+", type=_field, default=[], metavar="KEY=VALUE",
                   help="TrainConfig fields set in every recipe of this call (JSON values), e.g. warmup=50")
    p.add_argument("--tag", default="", help="appended to each recipe's name in the results (with --set)")
    p.add_argument("--out", type=Path, help="results file (default: assets/recipe_study_<profile>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def recipe_config(profile, name, steps, extra=()):
    "The TrainConfig of recipe `name` at `steps` steps of the profile's batch (scaled by its steps_factor)."
    base = T.config_for(profile, **SD_RECIPE)  # every recipe is a change to SD's, whatever the profile's default
    fields = {**RECIPES[name][1], **dict(extra)}
    factor = fields.pop("steps_factor", 1.0)
    if "unet" in fields:
        fields["unet"] = {**base.unet, **fields["unet"]}
    return T.replace(base, unet_steps=round(steps * factor), **fields)


def ensure_base(profile, base, progress=True):
    "Train the VAE and the text encoder into `base` unless they are there; returns the splits (seed 0)."
    splits = load_captioned_shapes(profile.name, seed=0)
    if not ((base / "vae").is_dir() and (base / "text_encoder").is_dir()):
        T.train(T.config_for(profile), base, stages=("vae", "text"), resume=True, splits=splits, progress=progress)
    return splits


def run_recipe(cfg, base, splits, every, progress=True):
    """Train `cfg`'s UNet on `base`'s frozen stages in chunks, evaluating after each; returns the run's dict."""
    with tempfile.TemporaryDirectory(prefix="minisd-recipe-") as tmp:
        folder = Path(tmp)
        for part in ("vae", "text_encoder", "tokenizer"):
            shutil.copytree(base / part, folder / part)
        points, report, _ = train_in_chunks(cfg, folder, splits, every, stages=("unet",), eval_seed=0,
                                            progress=progress)
        losses = json.loads((folder / "unet_losses.json").read_text())
    return {"points": points, "unet_losses": [round(x, 4) for x in losses], "unet_batch": cfg.unet_batch,
            "unet_steps": cfg.unet_steps, "unet_parameters": report["unet_parameters"]}


def main(argv=None):
    "The command line: train the recipes, merge their runs into the results file; returns that file's dict."
    parser = build_parser()
    argv, args, profile = parse_with_profile(parser, argv)
    steps = args.steps or T.config_for(profile).unet_steps // 2
    out = args.out or Path("assets") / f"recipe_study_{profile.name}.json"
    results = json.loads(out.read_text()) if out.exists() else {"profile": profile.name, "runs": []}
    plan = []  # every recipe's config first, so that a bad --set is refused before anything trains
    for name in args.recipes:
        for seed in args.seeds:
            try:
                plan.append((name, seed, recipe_config(profile, name, steps, [*args.fields, ("seed", seed)])))
            except (TypeError, ValueError) as e:  # an unknown field or a bad value, named by TrainConfig
                parser.error(f"argument --set: {e}")
    splits = ensure_base(profile, args.base, progress=not args.quiet)
    for name, seed, cfg in plan:
        every = min(args.every or max(1, cfg.unet_steps // 5), cfg.unet_steps)
        label = name + args.tag
        print(f"{label}, seed {seed}: {RECIPES[name][0]}; {cfg.unet_steps} steps of batch {cfg.unet_batch}", flush=True)
        run = run_recipe(cfg, args.base, splits, every, progress=not args.quiet)
        run.update(recipe=label, seed=seed, description=RECIPES[name][0], fields=dict(args.fields),
                   config=asdict(cfg), argv=shlex.join(["python", SCRIPT, *argv]), machine=_machine(),
                   device=str(T.get_device()), date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        results["runs"] = [r for r in results["runs"] if (r["recipe"], r["seed"]) != (label, seed)] + [run]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
