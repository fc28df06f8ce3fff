"""Right and wrong answers to chapter 03's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
def reparameterise(mean, logvar, generator=None):
    eps = torch.randn(mean.shape, generator=generator)
    return mean + torch.exp(0.5 * logvar) * eps
''',
    "exercise 2": '''
def kl_to_prior(mean, logvar):
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=1)
''',
    "exercise 3": '''
import torch
import torch.nn.functional as F
from minisd.data import ATTRIBUTES
def one_hot_condition(condition):
    return torch.cat([F.one_hot(condition[:, i], len(values) + 1) for i, values in enumerate(ATTRIBUTES.values())],
                     dim=1).float()
''',
}

WRONG = {
    # the right distribution, but torch.normal does not pass gradients to mean and std
    "exercise 1": (
        '    eps = torch.randn(mean.shape, generator=generator)\n'
        '    return mean + torch.exp(0.5 * logvar) * eps\n',
        '    return torch.normal(mean, torch.exp(0.5 * logvar), generator=generator)\n',
    ),
    # the standard deviation where the variance belongs
    "exercise 2": '''
def kl_to_prior(mean, logvar):
    return 0.5 * (mean**2 + (0.5 * logvar).exp() - 1 - logvar).sum(dim=1)
''',
    # no "not given" class: the size column of a caption without a size (index 2) does not fit
    "exercise 3": (
        '    return torch.cat([F.one_hot(condition[:, i], len(values) + 1) for i, values in'
        ' enumerate(ATTRIBUTES.values())],\n'
        '                     dim=1).float()\n',
        '    return torch.cat([F.one_hot(condition[:, i].clamp(max=len(values) - 1), len(values))\n'
        '                      for i, values in enumerate(ATTRIBUTES.values())], dim=1).float()\n',
    ),
}
