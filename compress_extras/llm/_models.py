"""The two language models of the ICQuant experiments, loaded offline from ``data/``.

- SmolLM2-135M-Instruct, shipped as GGUF Q4_1 (``data/smollm2``): transformers' GGUF reader
  dequantizes it to a float ``LlamaForCausalLM`` (30 layers, hidden 576, 211 Linear layers of
  which ``lm_head`` shares the embedding matrix). Its "as shipped" weights are therefore already
  4-bit-per-block (Q4_1: 32 weights share a float16 scale and minimum).
- all-MiniLM-L6-v2 in float32 (``data/minilm``): a 6-layer BERT encoder (hidden 384).

Both need ``transformers`` (and ``gguf``/``accelerate`` for SmolLM2), the ``llm`` extra. Loading
sets ``HF_HUB_OFFLINE=1``: nothing is fetched.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from compress_extras.llm._files import find_data

__all__ = ["SMOLLM2_GGUF", "linear_layers", "load_minilm", "load_smollm2", "tiny_llama"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError as error:
        raise ImportError("the language-model loaders need transformers, gguf and accelerate: "
                          'pip install -e ".[llm]"') from error
    transformers.logging.set_verbosity_error()
    return transformers


def load_smollm2(root: str | os.PathLike[str] | None = None, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) of SmolLM2-135M-Instruct, in eval mode."""
    folder = find_data("smollm2", root, required=(SMOLLM2_GGUF,))
    tf = _transformers()
    tokenizer = tf.AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = tf.AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=dtype)
    return model.eval(), tokenizer


def load_minilm(root: str | os.PathLike[str] | None = None):
    """(model, tokenizer) of all-MiniLM-L6-v2 (a transformers ``BertModel``), in eval mode."""
    folder = find_data("minilm", root, required=("model.safetensors", "config.json"))
    tf = _transformers()
    tokenizer = tf.AutoTokenizer.from_pretrained(folder)
    model = tf.AutoModel.from_pretrained(folder, dtype=torch.float32)
    return model.eval(), tokenizer


def linear_layers(model: nn.Module, skip_tied: bool = True) -> list[str]:
    """Names of the model's nn.Linear layers, leaving out (with ``skip_tied``) any whose weight is
    also another parameter (a tied ``lm_head`` is the embedding, not a layer to quantize)."""
    seen = {id(p) for name, m in model.named_modules() if not isinstance(m, nn.Linear)
            for p in m.parameters(recurse=False)}
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)
            and not (skip_tied and id(m.weight) in seen)]


def tiny_llama(seed: int = 0) -> nn.Module:
    """A tiny random ``LlamaForCausalLM`` for smoke runs and tests (no data needed): 3 layers,
    hidden 32, MLP 64, 4 query heads sharing 2 key/value heads, vocabulary 100, tied embedding;
    its weights from ``torch.manual_seed(seed)``, in eval mode."""
    transformers = _transformers()
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(config).eval()
