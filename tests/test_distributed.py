"""Training on several processes (chapter 08b, "Scaling out"): DDP through torchrun's environment, on the CPU with gloo.

Two processes on the same global batch must give the one-process update (up to float sum order),
an interrupted two-process run must resume exactly, and only rank 0 may write. The processes are
spawned with torch.multiprocessing, each joining the group from the variables torchrun would set.
The gpu profile's configuration is dry-run here too, a few steps on the CPU, so it cannot rot.
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from minisd import train as T
from datasets import load_from_disk
from minisd.data import make_captioned_shapes
from minisd.training_utils import init_distributed

SMALL = dict(image_size=32, n_train=64, n_test=8, n_heldout=8)
STEPS, CUT = 6, 3  # UNet steps; the interrupted run stops after CUT


def _cfg():
    return T.config_for("quick", vae_steps=2, clip={"steps": 2}, unet_steps=STEPS, unet_batch=8, checkpoint_every=2,
                        warmup=2)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _writes_of_this_process(base):
    "Record every file this process creates, opens for writing, renames or removes under `base` (audit hooks)."
    seen, base = [], str(base)

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and os.fsdecode(args[0]).startswith(base):
                seen.append(("open", os.fsdecode(args[0])))
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir") and os.fsdecode(args[0]).startswith(base):
            seen.append((event, os.fsdecode(args[0])))
    sys.addaudithook(hook)
    return seen


def _worker(rank, world, port, base, jobs, queue):
    "One process of the group: join it as torchrun would, run `jobs` [(folder name, train kwargs)], report writes."
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), MINISD_DEVICE="cpu")
    torch.set_num_threads(1)
    init_distributed()
    writes = _writes_of_this_process(base) if rank else []
    splits = load_from_disk(str(Path(base) / "splits"))
    steps = [T.train(_cfg(), Path(base) / name, device="cpu", splits=splits, progress=False, **kwargs)[1]["unet_steps"]
             for name, kwargs in jobs]
    torch.distributed.destroy_process_group()
    queue.put((rank, steps, writes))


def _spawn(base, jobs, world=2):
    "Run `jobs` on `world` processes; returns the UNet steps of each job and what each rank but 0 wrote under `base`."
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_worker, args=(world, _free_port(), str(base), jobs, queue), nprocs=world, join=True)
    results = {r: (steps, writes) for r, steps, writes in (queue.get() for _ in range(world))}
    assert all(steps == results[0][0] for steps, _ in results.values())
    return results[0][0], {r: writes for r, (_, writes) in results.items() if r}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "One process; then two processes: uninterrupted, cut after CUT steps, and the cut run resumed."
    base = tmp_path_factory.mktemp("ddp")
    splits = make_captioned_shapes(**SMALL, seed=0)
    splits.save_to_disk(str(base / "splits"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each spawned process
    try:
        T.train(_cfg(), base / "one", device="cpu", splits=splits, progress=False)
    finally:
        torch.set_num_threads(threads)
    for stage in ("vae", "text_encoder", "tokenizer"):  # the cut run trains only the UNet, on the same frozen stages
        shutil.copytree(base / "one" / stage, base / "cut" / stage)
    # one spawn serves every test (starting processes is the slow part): the cut run stops after CUT
    # steps, then a new `train` call in each process resumes it from rank 0's checkpoint file alone
    steps, writes = _spawn(base, [("two", {}), ("cut", {"stages": ("unet",), "stop_after": CUT}),
                                  ("cut", {"stages": ("unet",), "resume": True})])
    return base, steps, writes


def _relative_error(a, b, prefix):
    "|a - b| / |b| over all the tensors whose names start with `prefix`, flattened into one vector."
    a, b = (torch.cat([d[k].double().flatten() for k in sorted(d) if k.startswith(prefix)]) for d in (a, b))
    return ((a - b).norm() / b.norm()).item()


def test_two_processes_make_the_one_process_update(runs):
    base = runs[0]
    one, two = load_file(base / "one" / T.STATE_NAME), load_file(base / "two" / T.STATE_NAME)
    assert one.keys() == two.keys()
    assert len(one["losses"]) == STEPS
    assert torch.allclose(two["losses"], one["losses"], rtol=1e-5, atol=0)  # the global batch's mean loss
    for prefix in ("unet.", "ema.", "optim."):  # the weights, their EMA and AdamW's moments
        assert _relative_error(two, one, prefix) < 1e-5, prefix
    report = (base / "two" / "train_report.json").read_text()
    assert '"processes": 2' in report


def test_an_interrupted_two_process_run_resumes_exactly(runs):
    base, steps, _ = runs
    assert steps == [STEPS, CUT, STEPS]  # rank 0's checkpoint at the cut ...
    full, resumed = load_file(base / "two" / T.STATE_NAME), load_file(base / "cut" / T.STATE_NAME)
    assert full.keys() == resumed.keys()
    for key in full:  # ... resumes both processes to the uninterrupted run, bit for bit
        assert torch.equal(full[key], resumed[key]), key


def test_only_rank_0_writes(runs):
    base, _, writes = runs
    assert writes == {1: []}
    expected = {"vae", "text_encoder", "tokenizer", "unet", "scheduler", "model_index.json", "train_report.json",
                "unet_losses.json", T.STATE_NAME}
    assert {p.name for p in (base / "two").iterdir()} == expected


def test_the_batch_must_split_evenly(monkeypatch, tmp_path):
    monkeypatch.setattr(T, "world_size", lambda: 3)
    with pytest.raises(ValueError, match=r"unet_batch \(8\) must be a multiple of the number of processes \(3\)"):
        T.train_unet_stage(_cfg(), None, None, None, [0] * 4, tmp_path, "cpu")


def test_the_gpu_profile_dry_runs_on_the_cpu(tmp_path):
    "The gpu profile's architecture, unchanged, trains a few steps on the CPU with tiny batches."
    cfg = T.config_for("gpu")
    tiny = T.replace(cfg, vae_steps=1, vae_batch=2, clip={**cfg.clip, "steps": 1, "batch_size": 4}, unet_steps=2,
                     unet_batch=2, warmup=1, checkpoint_every=2)
    splits = make_captioned_shapes(image_size=64, n_train=8, n_test=2, n_heldout=2, seed=0)
    pipe, report = T.train(tiny, tmp_path, device="cpu", splits=splits, progress=False)
    assert report["unet_steps"] == 2 and torch.isfinite(torch.tensor(report["unet_final_loss"]))
    assert pipe.unet.config["block_out_channels"] == cfg.unet["block_out_channels"]
    assert pipe.vae.config["block_out_channels"] == cfg.vae["block_out_channels"]
    images = pipe(["a red circle"], num_inference_steps=1, guidance_scale=1.0,
                  generator=torch.Generator().manual_seed(0), progress=False)
    assert images.shape == (1, 3, 64, 64)


def test_torchrun_trains_the_quick_profile_end_to_end(tmp_path):
    "`torchrun --standalone --nproc_per_node=2 -m minisd train --profile quick` on the CPU, as the README shows it."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINISD_DEVICE": "cpu"}
    out = tmp_path / "checkpoint"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "minisd",
               "train", "--profile", "quick", "--out", str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained vae, text, unet into") == 1  # rank 0 alone prints
    assert (out / "model_index.json").exists() and (out / "unet" / "config.json").exists()
    assert '"processes": 2' in (out / "train_report.json").read_text()
