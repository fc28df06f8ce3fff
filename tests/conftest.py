"""Test settings shared by the unit tests and the notebook tests (nbval).

Everything runs offline and small: the Hugging Face hub is never contacted, the `quick` profile
sizes every notebook, and generated data goes to a throw-away cache. The variables are set here,
at import, so the Jupyter kernels that nbval starts inherit them too; the Makefile sets the same
ones for runs that collect only `chapters/`.
"""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MINISD_PROFILE", "quick")
os.environ.setdefault("MINISD_CACHE", tempfile.mkdtemp(prefix="minisd-test-cache-"))
