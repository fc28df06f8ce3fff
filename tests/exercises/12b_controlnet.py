"""Right and wrong answers to chapter 12b's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def count_residuals(block_out_channels, layers_per_block):
    n = len(block_out_channels)
    return 1 + n * layers_per_block + (n - 1)
''',
    "exercise 2": '''
import torch


def zero_conv(channels):
    conv = torch.nn.Conv2d(channels, channels, kernel_size=1)
    torch.nn.init.zeros_(conv.weight)
    torch.nn.init.zeros_(conv.bias)
    return conv
''',
    "exercise 3": "prediction_3 = 2928",
}

WRONG = {
    # forgets conv_in's output, the first skip the UNet keeps
    "exercise 1": ("    return 1 + n * layers_per_block + (n - 1)\n", "    return n * layers_per_block + (n - 1)\n"),
    # freezes the zero convolution: its output is zero, but it can never learn
    "exercise 2": ("    torch.nn.init.zeros_(conv.bias)\n",
                   "    torch.nn.init.zeros_(conv.bias)\n    conv.requires_grad_(False)\n"),
    # counts the weights but forgets the biases
    "exercise 3": "prediction_3 = 2816",
}
