"""Right and wrong answers to chapter 13a's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def lora_delta(lora_A, lora_B, lora_alpha, r):
    return (lora_alpha / r) * lora_B @ lora_A
''',
    "exercise 2": "prediction_2 = 1024",
    "exercise 3": '''
def restore_rows(weight, original, token_id):
    import torch
    keep = torch.ones(len(weight), dtype=torch.bool)
    keep[token_id] = False
    with torch.no_grad():
        weight[keep] = original[keep]
''',
}

WRONG = {
    # forgets the scale alpha / r
    "exercise 1": ("    return (lora_alpha / r) * lora_B @ lora_A\n", "    return lora_B @ lora_A\n"),
    # counts the full 64 x 64 matrix instead of r (in + out)
    "exercise 2": "prediction_2 = 4096",
    # restores the learned row too (the mask is not inverted)
    "exercise 3": ("    keep[token_id] = False\n", "    keep[:] = True\n"),
}
