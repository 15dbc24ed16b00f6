"""Tiny random GGUF files written in the test itself with the ``gguf`` package: a 2-layer Llama with
grouped-query attention and SwiGLU (SmolLM2's architecture), a byte-level BPE tokenizer, F32 weights."""

from pathlib import Path

import numpy as np
from gguf import GGUFWriter

__all__ = ["D_MODEL", "N_LAYERS", "byte_tokens", "write_tiny_llama_gguf"]

D_MODEL, N_LAYERS, N_HEADS, N_KV_HEADS, D_MLP, N_CTX = 32, 2, 4, 2, 64, 64


def byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode alphabet: every byte is a token, so any text tokenizes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def write_tiny_llama_gguf(
    path: Path, *, seed: int = 0, add_bos: bool = True, arch: str = "llama", n_ctx: int = N_CTX
) -> Path:
    """A random tiny Llama GGUF at ``path`` (``arch`` other than llama writes a header naming it, for
    the refusal test)."""
    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>", *byte_tokens(), "Ġt", "he"]
    vocab = len(tokens)
    w = GGUFWriter(str(path), arch)
    w.add_block_count(N_LAYERS)
    w.add_context_length(n_ctx)
    w.add_embedding_length(D_MODEL)
    w.add_feed_forward_length(D_MLP)
    w.add_head_count(N_HEADS)
    w.add_head_count_kv(N_KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(D_MODEL // N_HEADS)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (vocab - 3))  # 3 = control, 1 = normal
    w.add_token_merges(["Ġ t", "h e"])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(add_bos)

    def tensor(name: str, *shape: int, scale: float = 0.2) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    d_kv = D_MODEL // N_HEADS * N_KV_HEADS
    tensor("token_embd.weight", vocab, D_MODEL)
    for i in range(N_LAYERS):
        w.add_tensor(f"blk.{i}.attn_norm.weight", (1 + 0.1 * rng.standard_normal(D_MODEL)).astype(np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", (1 + 0.1 * rng.standard_normal(D_MODEL)).astype(np.float32))
        tensor(f"blk.{i}.attn_q.weight", D_MODEL, D_MODEL)
        tensor(f"blk.{i}.attn_k.weight", d_kv, D_MODEL)
        tensor(f"blk.{i}.attn_v.weight", d_kv, D_MODEL)
        tensor(f"blk.{i}.attn_output.weight", D_MODEL, D_MODEL)
        tensor(f"blk.{i}.ffn_gate.weight", D_MLP, D_MODEL)
        tensor(f"blk.{i}.ffn_up.weight", D_MLP, D_MODEL)
        tensor(f"blk.{i}.ffn_down.weight", D_MODEL, D_MLP)
    w.add_tensor("output_norm.weight", np.ones(D_MODEL, dtype=np.float32))
    tensor("output.weight", vocab, D_MODEL)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
