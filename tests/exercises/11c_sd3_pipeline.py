"""Right and wrong answers to chapter 11c's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
import torch.nn.functional as F

def joint_prompt_embeds(states_1, states_2, joint_attention_dim, max_sequence_length):
    clip = torch.cat([states_1, states_2], dim=-1)
    clip = F.pad(clip, (0, joint_attention_dim - clip.shape[-1]))
    t5 = torch.zeros(clip.shape[0], max_sequence_length, joint_attention_dim, dtype=clip.dtype)
    return torch.cat([clip, t5], dim=1)
''',
    "exercise 2": '''
def guided_euler_step(latents, v_uncond, v_text, guidance_scale, sigma, sigma_next):
    v = v_uncond + guidance_scale * (v_text - v_uncond)
    return latents + (sigma_next - sigma) * v
''',
    "exercise 3": "prediction_3 = (6, 333, 333 + 64)",
}

WRONG = {
    # the two CLIP encoders stacked as more tokens instead of side by side as features
    "exercise 1": '''
import torch
import torch.nn.functional as F

def joint_prompt_embeds(states_1, states_2, joint_attention_dim, max_sequence_length):
    clip = torch.cat([F.pad(states_1, (0, joint_attention_dim - states_1.shape[-1])),
                      F.pad(states_2, (0, joint_attention_dim - states_2.shape[-1]))], dim=1)
    t5 = torch.zeros(clip.shape[0], max_sequence_length, joint_attention_dim, dtype=clip.dtype)
    return torch.cat([clip, t5], dim=1)
''',
    # steps up the time axis (sigma - sigma_next): away from the data, back towards noise
    "exercise 2": ("    return latents + (sigma_next - sigma) * v\n", "    return latents + (sigma - sigma_next) * v\n"),
    # forgets that guidance doubles the batch, and leaves T5's 256 zero rows out of the sequence
    "exercise 3": "prediction_3 = (3, 77, 77 + 64)",
}
