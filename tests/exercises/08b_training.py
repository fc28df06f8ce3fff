"""Right and wrong answers to chapter 08b's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
def drop_captions(states, empty, p, generator):
    drop = torch.rand(states.shape[0], generator=generator) < p
    return torch.where(drop[:, None, None], empty, states)
''',
    "exercise 2": '''
def ema_weights(decays):
    weights, left = [], 1.0  # walk back from the last update: `left` is what the later decays leave
    for d in reversed(decays):
        weights.append((1 - d) * left)
        left *= d
    return [left] + weights[::-1]
''',
    "exercise 3": '''
share_last_100 = 1.0
for t in range(900, 1000):
    share_last_100 *= min(0.999, (1 + t) / (10 + t))
share_last_100 = 1 - share_last_100
''',
}

WRONG = {
    # one coin for the whole batch: every caption is dropped together, or none is
    "exercise 1": (
        '    drop = torch.rand(states.shape[0], generator=generator) < p\n'
        '    return torch.where(drop[:, None, None], empty, states)\n',
        '    if torch.rand(1, generator=generator).item() < p:\n'
        '        return empty.expand_as(states).clone()\n'
        '    return states\n',
    ),
    # gives each model its own (1 - d) and forgets that the later decays shrink it again
    "exercise 2": '''
def ema_weights(decays):
    weights = [1 - d for d in decays]
    return [1 - sum(weights)] + weights
''',
    # the nominal decay: 1 - 0.999 ** 100, as if the warm-up had ended long ago
    "exercise 3": "share_last_100 = 1 - 0.999 ** 100",
}
