"""bench/llamacpp_peer.py: llama.cpp's per-tensor type rules, and (when build/ggml is built) its quantizers."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _peer():
    spec = importlib.util.spec_from_file_location("llamacpp_peer", REPO / "bench" / "llamacpp_peer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _smollm2_like() -> list[tuple[str, torch.Tensor]]:
    shapes = {"self_attn.q_proj": (576, 576), "self_attn.k_proj": (192, 576), "self_attn.v_proj": (192, 576),
              "self_attn.o_proj": (576, 576), "mlp.gate_proj": (1536, 576), "mlp.up_proj": (1536, 576),
              "mlp.down_proj": (576, 1536)}  # fmt: skip
    return [(f"model.layers.{i}.{k}", torch.empty(s, device="meta")) for i in range(30) for k, s in shapes.items()]


def test_rules_and_fallbacks_on_576_wide_maps() -> None:
    lc = _peer()
    weights = _smollm2_like()
    used = {f: Counter((lc.category(n), t[1]) for n, t in lc.plan(f, weights, 30, 3).items()) for f in lc.FTYPES}
    # 576 is not a multiple of 256: Q5_K -> Q5_1, Q4_K -> Q5_0, Q6_K -> Q8_0, IQ4_XS -> IQ4_NL; ffn_down (1536 wide) keeps K/IQ4_XS
    assert used["Q5_K_S"] == Counter({(c, "Q5_1"): 30 for c in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up")} | {("ffn_down", "Q5_K"): 30})
    # Q5_K_M / Q4_K_M: use_more_bits layers (0-2, 5, 8, ..., 23, 26-29: 14 of 30) bump attn_v and ffn_down to Q6_K
    assert used["Q5_K_M"][("attn_v", "Q8_0")] == 14 and used["Q5_K_M"][("ffn_down", "Q6_K")] == 14
    assert used["Q4_K_M"][("attn_v", "Q8_0")] == 14 and used["Q4_K_M"][("ffn_down", "Q4_K")] == 16
    # Q4_K_S: attn_v of the first 4 layers and ffn_down of the first 30/8 = 3 layers get Q5_K
    assert used["Q4_K_S"][("attn_v", "Q5_1")] == 4 and used["Q4_K_S"][("ffn_down", "Q5_K")] == 3
    assert used["IQ4_XS"][("attn_q", "IQ4_NL")] == 30 and used["IQ4_XS"][("ffn_down", "IQ4_XS")] == 30


def test_bert_names_map_to_llama_cpp_categories() -> None:
    lc = _peer()
    names = {"encoder.layer.3.attention.self.query": "attn_q", "encoder.layer.3.attention.self.value": "attn_v",
             "encoder.layer.3.attention.output.dense": "attn_output", "encoder.layer.3.intermediate.dense": "ffn_up",
             "encoder.layer.3.output.dense": "ffn_down"}  # fmt: skip
    assert {n: lc.category(n) for n in names} == names
    assert all(lc.layer_index(n) == 3 for n in names)
