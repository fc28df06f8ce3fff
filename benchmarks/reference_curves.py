"""Reference curves of the main job: the loss of each training stage and adherence over UNet steps.

    python benchmarks/reference_curves.py --profile cpu          # writes assets/reference_curves_cpu.{json,png}

"Is my loss curve normal?": compare your own run with these. The script trains the profile's default
configuration (`minisd.train.config_for(profile)`) on the profile's captioned shapes, as
`python -m minisd train` and `make demo` do, into a scratch folder (a temporary one unless --folder).

The UNet stage runs in chunks: `train(cfg, folder, resume=True, stop_after=k)` for k = every, 2 every, ...,
and the profile's unet_steps as the last point even when `every` does not divide it. Resuming is exact in
minisd (tests/test_train.py; tests/test_reference_curves.py checks it again for this script), so the
weights and losses at each point are those of the ordinary uninterrupted run, and the final weights are
those `make demo` trains. After each chunk, all-attribute adherence is measured on the test and held-out
splits with the demo's own evaluation (`minisd.evaluate.evaluate`, at cfg.eval_prompts prompts per split,
cfg.eval_steps DDIM steps, guidance cfg.eval_guidance), kept as hits / n / abstained with the Wilson 95%
interval. So the last point is the adherence that `make demo` reports for the same profile and machine.

Times: "unet minutes" at a point is the training time an uninterrupted run spends to get there, without
evaluation: the first chunk's whole UNet stage (it includes the one-off encoding of the training set) plus
each later chunk's training loop only (its images / its images per second), so the reloading that a chunk
needs, and an uninterrupted run does not, is left out.

The loss histories: the UNet's per-step losses are what train() writes to unet_losses.json; the VAE's
and the mini CLIP's come from the functions train() calls for them (`train_vae`, `train_mini_clip`),
whose return values train() reduces to their last value, so the script records those return values as
the calls happen (it trains nothing itself).
"""

import argparse
import contextlib
import json
import platform
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from minisd import train as T
from minisd.__main__ import _positive_int, _profile  # the command line's argument types
from minisd.core import get_profile
from minisd.data import load_captioned_shapes
from minisd.evaluate import evaluate
from minisd.reader import format_rate, wilson_interval

SCRIPT = "benchmarks/reference_curves.py"


class _Parser(argparse.ArgumentParser):
    "An argument parser whose errors are one line naming the argument (no usage block)."

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    p = _Parser(prog=SCRIPT, description=__doc__.splitlines()[0])
    p.add_argument("--profile", type=_profile,
                   help="quick, cpu or gpu (default: MINISD_PROFILE, else gpu with CUDA, else cpu)")
    p.add_argument("--out", type=Path, default=Path("assets"),
                   help="folder for reference_curves_<profile>.json and .png (default: %(default)s)")
    p.add_argument("--every", type=_positive_int,
                   help="UNet steps between adherence points, at most the profile's unet_steps; the last point is "
                        "always unet_steps (default: a tenth of unet_steps, 100 at the cpu profile)")
    p.add_argument("--folder", type=Path,
                   help="keep the trained pipeline folder here (default: a temporary folder, removed at the end)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the point lines and table stay)")
    return p


def checkpoints(unet_steps, every):
    "The UNet steps at which adherence is measured: every, 2 every, ..., and unet_steps last."
    points = list(range(every, unet_steps + 1, every))
    return points if points and points[-1] == unet_steps else points + [unet_steps]


@contextlib.contextmanager
def recording(histories):
    """While inside, the VAE's and the mini CLIP's loss histories land in `histories` as train() trains them.

    train() keeps only each stage's final loss; the full histories are the return values of
    `train_vae` and `train_mini_clip`, which minisd.train calls by these names: wrap them, call through.
    """
    vae_fn, clip_fn = T.train_vae, T.train_mini_clip

    def train_vae(*args, **kwargs):
        history = vae_fn(*args, **kwargs)
        histories["vae"] = list(history["loss"])
        return history

    def train_mini_clip(*args, **kwargs):
        result = clip_fn(*args, **kwargs)
        histories["clip"] = list(result.losses)
        return result

    T.train_vae, T.train_mini_clip = train_vae, train_mini_clip
    try:
        yield histories
    finally:
        T.train_vae, T.train_mini_clip = vae_fn, clip_fn


def _rate(scores):
    "hits, n, abstained, the fraction and its Wilson 95% interval, from an `adherence` dict."
    low, high = wilson_interval(scores["hits"], scores["n"])
    return {"hits": scores["hits"], "n": scores["n"], "abstained": scores["abstained"], "rate": scores["all"],
            "low": low, "high": high}


def _machine():
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor(), "cpu_model": model, "torch_threads": torch.get_num_threads()}


def train_in_chunks(cfg, folder, splits, every, stages=T.STAGES, eval_seed=None, n_diversity=1, progress=True):
    """Train `cfg`'s `stages` into `folder` in exact-resume chunks of `every` UNet steps, evaluating after each.

    Each point holds the step, the UNet's training minutes so far as an uninterrupted run spends them (the
    first chunk's whole stage, the one-off encoding of the training set included, then each later chunk's
    images / images per second), and test and held-out adherence (`_rate`) at cfg's evaluation settings,
    sampled with `eval_seed` (default cfg.seed) by the sampler the recipe saves (DDIM, or EDM's Euler for EDM);
    with n_diversity > 1 also the diversity. Returns (points, the first chunk's train report, the seconds spent
    evaluating); prints a line per point.
    """
    points, unet_seconds, eval_seconds, first = [], 0.0, 0.0, None
    steps = checkpoints(cfg.unet_steps, every)
    for i, k in enumerate(steps):
        pipe, report = T.train(cfg, folder, stages=stages, resume=True, splits=splits, progress=progress,
                               stop_after=k)
        if i == 0:
            first = report
            unet_seconds += report["unet_seconds"]
        else:  # the loop alone: an uninterrupted run encodes the training set once, not once per chunk
            unet_seconds += cfg.unet_batch * (k - steps[i - 1]) / report["unet_images_per_second"]
        t0 = time.time()
        ev = evaluate(pipe, splits, cfg.eval_prompts, cfg.eval_steps, cfg.eval_guidance,
                      cfg.seed if eval_seed is None else eval_seed, n_diversity=n_diversity,
                      scheduler=type(pipe.scheduler).__name__)  # the sampler saved with the model
        eval_seconds += time.time() - t0
        point = {"step": k, "unet_seconds": unet_seconds, "test": _rate(ev["test"]), "heldout": _rate(ev["heldout"])}
        if n_diversity > 1:
            point["diversity"] = ev["diversity"]
        points.append(point)
        print(f"[{i + 1}/{len(steps)}] step {k}/{cfg.unet_steps}, {unet_seconds / 60:.2f} min of UNet training: "
            f"test {format_rate(ev['test']['hits'], ev['test']['n'], ev['test']['abstained'])}, "
            f"held-out {format_rate(ev['heldout']['hits'], ev['heldout']['n'], ev['heldout']['abstained'])}",
            flush=True)
    return points, first, eval_seconds


def run_curves(cfg, folder, every, progress=True):
    """Train `cfg` into `folder` in chunks of `every` UNet steps, evaluating after each; returns the curves dict."""
    splits = load_captioned_shapes(cfg.profile, seed=cfg.seed)
    histories = {}
    with recording(histories):
        points, first, eval_seconds = train_in_chunks(cfg, folder, splits, every, n_diversity=min(8, cfg.eval_prompts),
                                                      progress=progress)
    unet_losses = json.loads((Path(folder) / "unet_losses.json").read_text())
    return {"profile": cfg.profile, "every": every,
            "eval": {"prompts_per_split": cfg.eval_prompts, "ddim_steps": cfg.eval_steps,
                     "guidance": cfg.eval_guidance, "seed": cfg.seed, "metric": "all-attribute adherence"},
            "losses": {"vae": histories.get("vae"), "clip": histories.get("clip"), "unet": unet_losses},
            "points": points,
            "seconds": {"vae": first["vae_seconds"], "text": first["text_seconds"],
                        "unet": points[-1]["unet_seconds"], "evaluation": eval_seconds},
            "unet_images_per_step": cfg.unet_batch}


def smooth(values, window):
    "A centred running mean of `window` values (shorter at the ends), for the UNet's noisy per-step loss."
    x = torch.tensor(values, dtype=torch.float64)
    half = max(1, window) // 2
    c = torch.cat([torch.zeros(1, dtype=torch.float64), x.cumsum(0)])
    i = torch.arange(len(x))
    lo, hi = (i - half).clamp(min=0), (i + half + 1).clamp(max=len(x))
    return ((c[hi] - c[lo]) / (hi - lo)).tolist()


def plot(curves, path):
    "The 2x2 figure: VAE loss, mini CLIP loss, UNet loss (raw and smoothed), adherence against UNet steps."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    sec = curves["seconds"]
    for ax, key, title, seconds in ((axes[0, 0], "vae", "stage 1: VAE loss (reconstruction + KL)", sec["vae"]),
                                    (axes[0, 1], "clip", "stage 2: mini CLIP contrastive loss", sec["text"])):
        losses = curves["losses"][key]
        ax.plot(range(1, len(losses) + 1), losses, lw=0.8, color="C0", alpha=0.4, label="per step")
        ax.plot(range(1, len(losses) + 1), smooth(losses, max(1, len(losses) // 50)), color="C0",
                label="running mean")
        ax.set(title=f"{title}, {seconds / 60:.1f} min", xlabel="step", ylabel="loss")
        if min(losses) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    ax = axes[1, 0]
    unet = curves["losses"]["unet"]
    ax.plot(range(1, len(unet) + 1), unet, lw=0.6, color="C1", alpha=0.35, label="per step")
    ax.plot(range(1, len(unet) + 1), smooth(unet, max(1, len(unet) // 25)), color="C1", label="running mean")
    gamma = curves.get("config", {}).get("min_snr_gamma")  # the loss is then the min-SNR-weighted MSE
    ax.set(title=f"stage 3: UNet noise-prediction MSE{f', min-SNR-{gamma:g} weighted' if gamma else ''}, "
                 f"{sec['unet'] / 60:.1f} min", xlabel="UNet step",
           ylabel="loss", yscale="log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax = axes[1, 1]
    pts = curves["points"]
    steps = [p["step"] for p in pts]
    splits = (("test", "test prompts", "C2", -0.004), ("heldout", "held-out pairs", "C3", 0.004))
    for key, label, colour, shift in splits:
        rate = [p[key]["rate"] for p in pts]
        err = [[p[key]["rate"] - p[key]["low"] for p in pts], [p[key]["high"] - p[key]["rate"] for p in pts]]
        x = [s * (1 + shift) for s in steps]  # a nudge so the two sets of error bars do not cover each other
        ax.errorbar(x, rate, yerr=err, marker="o", capsize=3, color=colour, label=f"{label} (95% interval)")
    ev = curves["eval"]
    ax.set(title=f"all-attribute adherence, {pts[-1]['test']['n']} prompts per split", xlabel="UNet step",
           ylabel="adherence", ylim=(0, 1.02), xlim=(0, steps[-1] * 1.04))
    ax.text(0.02, 0.97, f"{ev['ddim_steps']} DDIM steps, guidance {ev['guidance']:g}", transform=ax.transAxes,
            va="top", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    xs = [0.0] + [float(s) for s in steps]
    ms = [0.0] + [p["unet_seconds"] / 60 for p in pts]
    top = ax.secondary_xaxis("top", functions=(lambda s: _interp(s, xs, ms), lambda m: _interp(m, ms, xs)))
    top.set_xlabel("minutes of UNet training")
    fig.suptitle(f"minisd reference curves, {curves['profile']} profile ({curves['machine']['cpu_model']}, "
                 f"torch threads: {curves['machine']['torch_threads']}, {curves['device']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def _interp(x, xp, fp):
    "Piecewise-linear through (xp, fp), continued linearly beyond both ends (a secondary axis needs an inverse)."
    import numpy as np

    x = np.asarray(x, dtype=float)
    y = np.interp(x, xp, fp)
    below, above = x < xp[0], x > xp[-1]
    y = np.where(below, fp[0] + (x - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0]), y)
    return np.where(above, fp[-1] + (x - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2]), y)


def table(curves):
    "The closing table, in markdown: step, minutes, test and held-out adherence with intervals."
    rows = ["| UNet step | minutes | test adherence | held-out adherence |", "|---:|---:|---|---|"]
    for p in curves["points"]:
        t, h = p["test"], p["heldout"]
        rows.append(f"| {p['step']} | {p['unet_seconds'] / 60:.2f} | {format_rate(t['hits'], t['n'], t['abstained'])} "
                    f"| {format_rate(h['hits'], h['n'], h['abstained'])} |")
    return rows


def parse_with_profile(parser, argv=None):
    "(argv, args, profile) from a parser with --profile; a bad MINISD_PROFILE is a one-line error like a bad --profile."
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:
        return argv, args, get_profile(args.profile)
    except ValueError as e:  # a bad MINISD_PROFILE when --profile is not given
        parser.error(f"argument --profile: {e}")


def main(argv=None):
    "The command line; returns the curves dict (or exits with status 2 and one line on a bad argument)."
    parser = build_parser()
    argv, args, profile = parse_with_profile(parser, argv)
    cfg = T.config_for(profile)
    every = args.every or max(1, cfg.unet_steps // 10)
    if every > cfg.unet_steps:
        parser.error(f"argument --every: must be at most the {profile.name} profile's unet_steps "
                     f"({cfg.unet_steps}), got {every}")
    if args.folder is not None and args.folder.exists() and any(args.folder.iterdir()):
        parser.error(f"argument --folder: {args.folder} is not empty; the curves start from an empty folder")
    started = time.time()
    with contextlib.ExitStack() as stack:
        folder = args.folder or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="minisd-curves-")))
        curves = run_curves(cfg, folder, every, progress=not args.quiet)
    curves.update(command=f"python {SCRIPT} --profile {profile.name} --every {every} --out {args.out}",
                  argv=shlex.join(["python", SCRIPT, *argv]), device=str(T.get_device()), machine=_machine(),
                  date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  total_seconds=time.time() - started, config=T.asdict(cfg))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"reference_curves_{profile.name}"
    Path(f"{stem}.json").write_text(json.dumps(curves, indent=1))
    plot(curves, f"{stem}.png")
    sec = curves["seconds"]
    print(f"\nreference curves, {profile.name} profile, {curves['date']} ({curves['machine']['cpu_model']}, "
          f"{curves['machine']['torch_threads']} torch threads, {curves['device']}); made by: {curves['command']}")
    print(f"stage times: VAE {sec['vae'] / 60:.1f} min, text encoder {sec['text'] / 60:.1f} min, "
          f"UNet {sec['unet'] / 60:.1f} min (evaluation {sec['evaluation'] / 60:.1f} min more)")
    print("\n".join(table(curves)))
    print(f"wrote {stem}.json and {stem}.png")
    return curves


if __name__ == "__main__":
    main()
