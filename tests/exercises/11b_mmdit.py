"""Right and wrong answers to chapter 11b's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def patchify(x, p):
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)
''',
    "exercise 2": '''
import torch.nn.functional as F

def modulate(x, emb, linear):
    shift_msa, scale_msa = linear(F.silu(emb)).chunk(6, dim=1)[:2]
    x = F.layer_norm(x, x.shape[-1:], eps=1e-6)
    return x * (1 + scale_msa[:, None]) + shift_msa[:, None]
''',
    "exercise 3": '''
import torch
import torch.nn.functional as F

def joint_attention(q_img, k_img, v_img, q_txt, k_txt, v_txt):
    q, k, v = (torch.cat(pair, dim=2) for pair in ((q_img, q_txt), (k_img, k_txt), (v_img, v_txt)))
    out = F.scaled_dot_product_attention(q, k, v)
    n = q_img.shape[2]
    return out[:, :, :n], out[:, :, n:]
''',
}

WRONG = {
    # channels last in each patch ((p, p, C), as an image library would): not the conv weight's (C, p, p)
    "exercise 1": '''
def patchify(x, p):
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // p) * (W // p), C * p * p)
''',
    # multiplies by scale instead of (1 + scale): a zero modulation would wipe the input out
    "exercise 2": '''
import torch.nn.functional as F

def modulate(x, emb, linear):
    shift_msa, scale_msa = linear(F.silu(emb)).chunk(6, dim=1)[:2]
    x = F.layer_norm(x, x.shape[-1:], eps=1e-6)
    return x * scale_msa[:, None] + shift_msa[:, None]
''',
    # two separate attentions (image over image, text over text): the streams never see each other
    "exercise 3": '''
import torch.nn.functional as F

def joint_attention(q_img, k_img, v_img, q_txt, k_txt, v_txt):
    return F.scaled_dot_product_attention(q_img, k_img, v_img), F.scaled_dot_product_attention(q_txt, k_txt, v_txt)
''',
}
