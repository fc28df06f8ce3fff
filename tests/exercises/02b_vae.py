"""Right and wrong answers to chapter 02b's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
def reparameterise(mean, logvar, eps):
    return mean + torch.exp(0.5 * logvar) * eps
''',
    "exercise 2": '''
import torch
def kl_to_prior(mean, logvar):
    return 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))
''',
    "exercise 3": '''
import math
import torch
def rate_and_information(a, s):
    rate = 0.5 * (a * a + s * s - 1 - math.log(s * s))
    z = torch.linspace(-a - 10 * s, a + 10 * s, 100_001, dtype=torch.float64)
    log_q1 = torch.distributions.Normal(a, s).log_prob(z)           # q(z | x = +1)
    log_q2 = torch.distributions.Normal(-a, s).log_prob(z)          # q(z | x = -1)
    log_q = torch.logaddexp(log_q1, log_q2) - math.log(2)           # q(z), the aggregate posterior
    info = (log_q1.exp() * (log_q1 - log_q)).sum().item() * (z[1] - z[0]).item()
    return rate, info
''',
}

WRONG = {
    # the variance where the standard deviation belongs
    "exercise 1": ('    return mean + torch.exp(0.5 * logvar) * eps\n', '    return mean + torch.exp(logvar) * eps\n'),
    # a mean over the latent values instead of a sum: the KL per value, not per image
    "exercise 2": (
        '    return 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))\n',
        '    return 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean(dim=(1, 2, 3))\n',
    ),
    # the claim this chapter corrects: the rate taken for the information
    "exercise 3": '''
import math
def rate_and_information(a, s):
    rate = 0.5 * (a * a + s * s - 1 - math.log(s * s))
    return rate, rate
''',
}
