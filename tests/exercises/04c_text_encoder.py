"""Right and wrong answers to chapter 04c's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
def pooled_output(last_hidden_state, input_ids, eos_token_id):
    pos = (input_ids == eos_token_id).int().argmax(-1)  # (B,): the first end token
    return last_hidden_state[torch.arange(len(input_ids)), pos]
''',
    "exercise 2": '''
def penultimate_hidden_state(model, input_ids):
    x = model.embeddings(input_ids)
    for layer in model.encoder.layers[:-1]:
        x = layer(x)
    return model.final_layer_norm(x)
''',
    "exercise 3": "prediction_3 = [6, 7, 8, 9, 10, 11]",
}

WRONG = {
    # the last position: right for a prompt that fills all positions, but padding comes after the end token
    "exercise 1": '''
def pooled_output(last_hidden_state, input_ids, eos_token_id):
    return last_hidden_state[:, -1]
''',
    # the penultimate layer's raw output, without the final LayerNorm that SD 2.x applies
    "exercise 2": ('    return model.final_layer_norm(x)\n', '    return x\n'),
    # only the changed token itself: forgets that every later position reads it
    "exercise 3": "prediction_3 = [6]",
}
