"""Right and wrong answers to chapter 00d's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
from torch import nn
from minisd.configuration import register_to_config
from minisd.modeling import ModelMixin
class TinyMLP(ModelMixin):
    @register_to_config
    def __init__(self, in_features=3, hidden=8, out_features=2):
        super().__init__()
        self.proj_in = nn.Linear(in_features, hidden)
        self.act = nn.SiLU()
        self.proj_out = nn.Linear(hidden, out_features)

    def forward(self, x):
        return self.proj_out(self.act(self.proj_in(x)))
''',
    "exercise 2": '''
import json
import struct
from pathlib import Path
def safetensors_shapes(path):
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in header.items() if k != "__metadata__"}
''',
    "exercise 3": "prediction_3 = (True, False)",  # from_pretrained returns eval mode; .train() turns dropout on
}

WRONG = {
    # forgets nn.Module's own __init__: assigning the first layer raises
    "exercise 1": ('        super().__init__()\n', ''),
    # reads the header's length as a big-endian number
    "exercise 2": ('    n = struct.unpack("<Q", raw[:8])[0]\n', '    n = struct.unpack(">Q", raw[:8])[0]\n'),
    # assumes a freshly loaded model is in training mode, so dropout changes every call
    "exercise 3": "prediction_3 = (False, False)",
}
