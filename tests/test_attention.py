"""minisd.attention: the hand-written attention against PyTorch's, the module against diffusers'."""

import pytest
import torch
import torch.nn.functional as F

from minisd.attention import Attention, attention_weights, scaled_dot_product_attention, set_fast_attention


def _qkv(seed=0, B=2, H=3, L=5, S=7, E=8, Ev=6):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, L, E, generator=g), torch.randn(B, H, S, E, generator=g),
            torch.randn(B, H, S, Ev, generator=g))


def _masks():
    g = torch.Generator().manual_seed(1)
    bool_full = torch.rand(2, 3, 5, 7, generator=g) > 0.4
    bool_bcast = torch.rand(5, 7, generator=g) > 0.4
    bool_bcast[3] = False  # a query that may attend to nothing
    key_pad = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    key_pad[1, ..., 4:] = False
    additive = torch.randn(2, 1, 5, 7, generator=g)
    additive_inf = torch.zeros(5, 7).masked_fill(torch.rand(5, 7, generator=g) > 0.5, float("-inf"))
    additive_inf[:, 0] = 0.0  # keep every row alive
    return {"none": None, "bool_full": bool_full, "bool_bcast": bool_bcast, "key_pad": key_pad,
            "additive": additive, "additive_inf": additive_inf}


@pytest.mark.parametrize("mask_name", list(_masks()))
def test_sdpa_matches_torch(mask_name):
    q, k, v = _qkv()
    mask = _masks()[mask_name]
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert ours.shape == ref.shape == (2, 3, 5, 6)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_sdpa_causal_and_scale_match_torch():
    q, k, v = _qkv(L=7, S=7)
    for kw in ({"is_causal": True}, {"scale": 0.37}, {"is_causal": True, "scale": 2.0}):
        assert torch.allclose(scaled_dot_product_attention(q, k, v, **kw),
                              F.scaled_dot_product_attention(q, k, v, **kw), atol=1e-6), kw


def test_sdpa_causal_rectangular_matches_torch():
    q, k, v = _qkv(L=4, S=9)
    assert torch.allclose(scaled_dot_product_attention(q, k, v, is_causal=True),
                          F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)


def test_weights_rows_sum_to_one_and_causal_zeros():
    q, k, _ = _qkv(L=6, S=6)
    w = attention_weights(q, k, is_causal=True)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 6))
    lower = torch.ones(6, 6, dtype=torch.bool).tril()
    assert (w[..., ~lower] == 0).all() and (w[..., lower] > 0).all()


def test_fully_masked_row_is_zero_not_nan():
    q, k, v = _qkv()
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[2] = False
    out = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert not out.isnan().any()
    assert (out[..., 2, :] == 0).all()


def test_bad_mask_dtype_and_causal_plus_mask_raise():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="attn_mask"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="is_causal"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.bool), is_causal=True)


def test_state_dict_keys_and_shapes():
    attn = Attention(query_dim=32, cross_attention_dim=48, heads=4, dim_head=8)
    sd = attn.state_dict()
    assert list(sd) == ["to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"]
    assert sd["to_k.weight"].shape == (32, 48) and sd["to_out.0.weight"].shape == (32, 32)
    with_bias = Attention(query_dim=16, heads=2, dim_head=4, bias=True, out_bias=False)
    assert set(with_bias.state_dict()) == {"to_q.weight", "to_q.bias", "to_k.weight", "to_k.bias",
                                           "to_v.weight", "to_v.bias", "to_out.0.weight"}


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="heads"):
        Attention(query_dim=16, heads=0)
    attn = Attention(query_dim=16, heads=2, dim_head=4)
    with pytest.raises(ValueError, match="hidden_states"):
        attn(torch.randn(2, 16, 4, 4))
    with pytest.raises(ValueError, match="attention_mask"):
        attn(torch.randn(2, 5, 16), attention_mask=torch.ones(5, dtype=torch.bool))


@pytest.mark.parametrize("cross_dim", [None, 24])
@pytest.mark.parametrize("mask_kind", ["none", "additive", "bool_keys"])
def test_matches_diffusers_attention(cross_dim, mask_kind):
    attention_processor = pytest.importorskip("diffusers.models.attention_processor")
    DiffusersAttention = attention_processor.Attention

    torch.manual_seed(0)
    ref = DiffusersAttention(query_dim=16, cross_attention_dim=cross_dim, heads=2, dim_head=8, bias=False).eval()
    for p in ref.parameters():  # make sure no parameter is left at a trivial value
        torch.nn.init.normal_(p, std=0.3)
    ours = Attention(query_dim=16, cross_attention_dim=cross_dim, heads=2, dim_head=8, bias=False).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 10, 16, generator=g)
    ctx = None if cross_dim is None else torch.randn(3, 6, cross_dim, generator=g)
    S = 10 if cross_dim is None else 6
    keep = torch.ones(3, S, dtype=torch.bool)
    keep[1, S // 2:] = False
    additive = ((~keep).float() * -10000.0)[:, None, :]  # diffusers' UNet: (1 - mask) * -10000, (B, 1, S)
    ref_mask = None if mask_kind == "none" else additive
    our_mask = {"none": None, "additive": additive, "bool_keys": keep}[mask_kind]
    with torch.no_grad():
        expected = ref(x, encoder_hidden_states=ctx, attention_mask=ref_mask)
        for fast in (True, False):
            set_fast_attention(ours, fast)
            got = ours(x, encoder_hidden_states=ctx, attention_mask=our_mask)
            assert got.shape == (3, 10, 16)
            assert torch.allclose(got, expected, atol=1e-5), (fast, (got - expected).abs().max())


def test_cross_attention_output_depends_on_context_only_through_keys_values():
    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=12, heads=2, dim_head=4).eval()
    x = torch.randn(1, 5, 8)
    ctx = torch.randn(1, 3, 12)
    # permuting the context tokens must not change a cross-attention output (attention is a set operation)
    assert torch.allclose(attn(x, ctx), attn(x, ctx[:, [2, 0, 1]]), atol=1e-6)
    # hiding a token with a mask is the same as removing it
    keep = torch.tensor([[True, False, True]])
    assert torch.allclose(attn(x, ctx, attention_mask=keep), attn(x, ctx[:, [0, 2]]), atol=1e-6)
