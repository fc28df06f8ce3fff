"""Right and wrong answers to chapter 09's quiz (exercises 1-16) and whiteboard exercises (17-20).

See tests/test_exercises.py.
"""

SOLUTIONS = {
    "exercise 1": 'answer_1 = (4, 64, 64)',
    "exercise 2": 'answer_2 = 100',
    "exercise 3": 'answer_3 = 1',
    "exercise 4": 'answer_4 = 30',
    "exercise 5": "answer_5 = {'unet'}",
    "exercise 6": "answer_6 = 'cvae'",
    "exercise 7": "answer_7 = 'c'",
    "exercise 8": "answer_8 = 'b'",
    "exercise 9": "answer_9 = 'c'",
    "exercise 10": "answer_10 = 'b'",
    "exercise 11": "answer_11 = 'b'",
    "exercise 12": 'answer_12 = 0',
    "exercise 13": 'answer_13 = 9',
    "exercise 14": 'answer_14 = 16',
    "exercise 15": 'answer_15 = 0.75',
    "exercise 16": 'answer_16 = 6.5',
    "exercise 17": '''
def latent_shape(height, width, block_out_channels, latent_channels):
    f = 2 ** (len(block_out_channels) - 1)
    return (latent_channels, height // f, width // f)
''',
    "exercise 18": '''
def cross_attention_params(query_dim, cross_attention_dim, heads, dim_head):
    inner = heads * dim_head
    return query_dim * inner + 2 * cross_attention_dim * inner + inner * query_dim + query_dim
''',
    "exercise 19": '''
def attention_scores_bytes(image_size, heads, batch, bytes_per_element):
    n = (image_size // 8) ** 2
    return batch * heads * n * n * bytes_per_element
''',
    "exercise 20": "prediction_20 = 30",  # 31.1%: most of SD 1.5's UNet is ResNet convolutions
}

WRONG = {
    # the image's channel count
    "exercise 1": 'answer_1 = (3, 64, 64)',
    # forgets the unconditional half
    "exercise 2": 'answer_2 = 50',
    # 0 ignores the text
    "exercise 3": 'answer_3 = 0',
    # counts the skipped steps
    "exercise 4": 'answer_4 = 20',
    # the seed's mistake
    "exercise 5": 'answer_5 = {"unet", "text_encoder"}',
    # the VAE is a KL autoencoder
    "exercise 6": 'answer_6 = "KL autoencoder"',
    # cross-attention is where the text enters
    "exercise 7": 'answer_7 = "D"',
    # DDIM does run in 20 to 50 steps
    "exercise 8": 'answer_8 = "C"',
    # training stability is real but not the name
    "exercise 9": 'answer_9 = "B"',
    # the closed form is exactly what training uses
    "exercise 10": 'answer_10 = "A"',
    # the mode is what maximising p(x|y) gives
    "exercise 11": 'answer_11 = "A"',
    # reads diffusers' unused config entry
    "exercise 12": 'answer_12 = 1',
    # that is InstructPix2Pix's
    "exercise 13": 'answer_13 = 8',
    # SD 1.x and SDXL
    "exercise 14": 'answer_14 = 4',
    # the shift is not a product
    "exercise 15": 'answer_15 = 0.5 * 3',
    # ignores the convention
    "exercise 16": 'answer_16 = 7.5',
    # one halving per block: forgets that the last block does not downsample
    "exercise 17": ('    f = 2 ** (len(block_out_channels) - 1)\n', '    f = 2 ** len(block_out_channels)\n'),
    # counts self-attention: keys and values read query_dim, not the text's width
    "exercise 18": (
        '    return query_dim * inner + 2 * cross_attention_dim * inner + inner * query_dim +'
        ' query_dim\n',
        '    return query_dim * inner + 2 * query_dim * inner + inner * query_dim + query_dim\n',
    ),
    # N = the latent's side, not its number of positions
    "exercise 19": ('    n = (image_size // 8) ** 2\n', '    n = image_size // 8\n'),
    # "a transformer-heavy UNet": attention dominates the compute at 64x64, not the parameters
    "exercise 20": "prediction_20 = 60",
}
