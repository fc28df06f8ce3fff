"""Right and wrong answers to chapter 04d's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def r_precision(sim, relevant):
    scores = []
    for s, rel in zip(sim, relevant):
        R = int(rel.sum())
        scores.append(rel[s.topk(R).indices].float().mean().item())
    return sum(scores) / len(scores)
''',
    "exercise 2": '''
def clip_targets(caption_ids):
    pos = (caption_ids[:, None] == caption_ids[None, :]).float()
    return pos / pos.sum(1, keepdim=True)
''',
    "exercise 3": '''
import math
import torch.nn.functional as F
def clip_logits(image_features, text_features, logit_scale):
    scale = logit_scale.clamp(max=math.log(100)).exp()
    return scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
''',
}

WRONG = {
    # precision@k with one fixed k for every query: a query with fewer relevant images cannot reach 1
    "exercise 1": '''
def r_precision(sim, relevant, k=2):
    return relevant.gather(1, sim.topk(k, dim=1).indices).float().mean().item()
''',
    # the identity target of plain CLIP: pushes apart captions that mean the same thing
    "exercise 2": (
        'def clip_targets(caption_ids):\n'
        '    pos = (caption_ids[:, None] == caption_ids[None, :]).float()\n'
        '    return pos / pos.sum(1, keepdim=True)\n',
        'import torch\n'
        'def clip_targets(caption_ids):\n'
        '    return torch.eye(len(caption_ids))\n',
    ),
    # forgets CLIP's cap on the temperature
    "exercise 3": '''
import torch.nn.functional as F
def clip_logits(image_features, text_features, logit_scale):
    return logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
''',
}
