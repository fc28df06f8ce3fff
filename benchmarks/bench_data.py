"""Benchmark the captioned-shapes data: rendering, building the splits, and the attribute reader.

Run on an otherwise idle machine: `.venv/bin/python benchmarks/bench_data.py`. Prints the best
of `--repeat` runs (the least disturbed), with the torch thread count, so figures are comparable.
"""

import argparse
import tempfile
import time

import numpy as np
import torch

from minisd import data, reader
from minisd.core import PROFILES


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="images to render")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    attrs = {k: [v[i] for i in rng.integers(len(v), size=args.n)] for k, v in data.ATTRIBUTES.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    t = best_of(lambda: data.render(attrs["shape"], attrs["colour"], attrs["size"], attrs["position"], 32), args.repeat)
    print(f"render {args.n} images at 32x32: {t:.2f} s ({args.n / t:,.0f} images/s)")
    t = best_of(lambda: data.render(attrs["shape"], attrs["colour"], attrs["size"], attrs["position"], 64), args.repeat)
    print(f"render {args.n} images at 64x64: {t:.2f} s ({args.n / t:,.0f} images/s)")
    p = PROFILES["cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        def build():
            data.make_captioned_shapes(p.image_size, p.n_train, p.n_test, p.n_heldout, seed=0).save_to_disk(tmp + "/shapes")
        t = best_of(build, 1)
    n_images = p.n_train + p.n_test + p.n_heldout
    print(f"cpu-profile splits ({n_images:,} images: render, PNG-encode, Dataset, save_to_disk): {t:.2f} s")
    x = torch.from_numpy(data.render(attrs["shape"][:1000], attrs["colour"][:1000], attrs["size"][:1000],
                                     attrs["position"][:1000], 32)).permute(0, 3, 1, 2) / 255
    t = best_of(lambda: reader.read_attributes(x), args.repeat)
    print(f"read_attributes on 1,000 images at 32x32: {t:.2f} s ({1000 / t:,.0f} images/s)")


if __name__ == "__main__":
    main()
