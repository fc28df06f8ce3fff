"""Right and wrong answers to chapter 02a's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def resnet_params(in_channels, out_channels, temb_channels=None):
    n = 2 * in_channels                                        # norm1: scale and shift per channel
    n += 9 * in_channels * out_channels + out_channels         # conv1, 3x3
    n += 2 * out_channels                                      # norm2
    n += 9 * out_channels * out_channels + out_channels        # conv2, 3x3
    if in_channels != out_channels:
        n += in_channels * out_channels + out_channels         # 1x1 conv_shortcut
    if temb_channels is not None:
        n += temb_channels * out_channels + out_channels       # time_emb_proj
    return n
''',
    "exercise 2": '''
def down_side(side, padding):
    if padding == 0:
        return (side + 1 - 3) // 2 + 1     # padded right and bottom by one
    return (side + 2 * padding - 3) // 2 + 1
''',
    "exercise 3": '''
import torch
def my_upsample(x):
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
''',
}

WRONG = {
    # forgets the 1x1 shortcut that appears when the channel count changes
    "exercise 1": '''
def resnet_params(in_channels, out_channels, temb_channels=None):
    n = 2 * in_channels + 9 * in_channels * out_channels + out_channels
    n += 2 * out_channels + 9 * out_channels * out_channels + out_channels
    if temb_channels is not None:
        n += temb_channels * out_channels + out_channels
    return n
''',
    # "a stride-2 block halves the side": true for even sides, one short for odd ones with padding=1
    "exercise 2": (
        '    if padding == 0:\n'
        '        return (side + 1 - 3) // 2 + 1     # padded right and bottom by one\n'
        '    return (side + 2 * padding - 3) // 2 + 1\n',
        '    return side // 2\n',
    ),
    # tiles the whole image 2x2 instead of copying each pixel
    "exercise 3": (
        'import torch\n'
        'def my_upsample(x):\n'
        '    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)\n',
        'def my_upsample(x):\n'
        '    return x.repeat(1, 1, 2, 2)\n',
    ),
}
