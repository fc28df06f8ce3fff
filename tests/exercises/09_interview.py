"""Right and wrong answers to chapter 09's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def latent_shape(height, width, block_out_channels, latent_channels):
    f = 2 ** (len(block_out_channels) - 1)
    return (latent_channels, height // f, width // f)
''',
    "exercise 2": '''
def cross_attention_params(query_dim, cross_attention_dim, heads, dim_head):
    inner = heads * dim_head
    return query_dim * inner + 2 * cross_attention_dim * inner + inner * query_dim + query_dim
''',
    "exercise 3": '''
def attention_scores_bytes(image_size, heads, batch, bytes_per_element):
    n = (image_size // 8) ** 2
    return batch * heads * n * n * bytes_per_element
''',
    "exercise 4": "prediction_4 = 30",  # 31.1%: most of SD 1.5's UNet is ResNet convolutions
}

WRONG = {
    # one halving per block: forgets that the last block does not downsample
    "exercise 1": ('    f = 2 ** (len(block_out_channels) - 1)\n', '    f = 2 ** len(block_out_channels)\n'),
    # counts self-attention: keys and values read query_dim, not the text's width
    "exercise 2": (
        '    return query_dim * inner + 2 * cross_attention_dim * inner + inner * query_dim +'
        ' query_dim\n',
        '    return query_dim * inner + 2 * query_dim * inner + inner * query_dim + query_dim\n',
    ),
    # N = the latent's side, not its number of positions
    "exercise 3": ('    n = (image_size // 8) ** 2\n', '    n = image_size // 8\n'),
    # "a transformer-heavy UNet": attention dominates the compute at 64x64, not the parameters
    "exercise 4": "prediction_4 = 60",
}
