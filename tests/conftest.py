"""Test settings shared by the unit tests and the notebook tests (nbval).

Everything runs offline and small: the Hugging Face hub is never contacted, the `quick` profile
sizes every notebook, and generated data goes to a throw-away cache. The variables are set here,
at import, so the Jupyter kernels that nbval starts inherit them too; the Makefile sets the same
ones for runs that collect only `chapters/`.
"""

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MINISD_PROFILE", "quick")
os.environ.setdefault("MINISD_CACHE", tempfile.mkdtemp(prefix="minisd-test-cache-"))

# The notebooks save their figures into assets/, where the committed ones come from cpu-profile
# runs. The quick profile's figures must not replace them, so the session puts assets/ back as
# it found it: changed files get their old bytes, new files are removed.
ASSETS = Path(__file__).resolve().parent.parent / "assets"
_assets_before = {}


def pytest_sessionstart(session):
    _assets_before.update({f: f.read_bytes() for f in ASSETS.rglob("*") if f.is_file()})


def pytest_sessionfinish(session, exitstatus):
    for f in [f for f in ASSETS.rglob("*") if f.is_file()]:
        if f not in _assets_before:
            f.unlink()
    for f, data in _assets_before.items():
        if not f.exists() or f.read_bytes() != data:
            f.write_bytes(data)
