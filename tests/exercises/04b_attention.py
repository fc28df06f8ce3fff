"""Right and wrong answers to chapter 04b's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import math
import torch
def my_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(-1) @ value
''',
    "exercise 2": '''
def split_heads(x, heads):
    B, N, C = x.shape
    return x.view(B, N, heads, C // heads).transpose(1, 2)
''',
    "exercise 3": "prediction_3 = 320 * 320 + 768 * 320 + 768 * 320 + 320 * 320 + 320",
}

WRONG = {
    # divides the scores by d instead of sqrt(d)
    "exercise 1": '''
import torch
def my_attention(query, key, value, attn_mask=None):
    scores = query @ key.transpose(-2, -1) / query.shape[-1]
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(-1) @ value
''',
    # reshapes straight to (B, heads, N, d): the right shape, but positions and heads are mixed
    "exercise 2": (
        '    return x.view(B, N, heads, C // heads).transpose(1, 2)\n',
        '    return x.reshape(B, heads, N, C // heads)\n',
    ),
    # forgets the bias of to_out (bias=False covers to_q, to_k and to_v only)
    "exercise 3": "prediction_3 = 320 * 320 + 768 * 320 + 768 * 320 + 320 * 320",
}
