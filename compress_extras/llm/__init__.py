"""The language-model side of the ICQuant experiments: offline models, text, perplexity.

Public API:
    load_smollm2          SmolLM2-135M-Instruct (GGUF Q4_1 -> float) and its tokenizer
    load_minilm           all-MiniLM-L6-v2 (float32 BERT encoder) and its tokenizer
    tiny_llama            a tiny random Llama-style model for smoke runs (no data needed)
    linear_layers         a model's nn.Linear names, tied heads left out
    austen_novels         Jane Austen's six novels as text (R package janeaustenr's data)
    AUSTEN_NOVELS         their names
    read_lazyload         reader of R lazy-load databases (.rdb/.rdx)
    fixed_windows         the fixed, evenly spread token windows every method is scored on
    perplexity            exp(mean next-token NLL) of a causal LM over those windows
    find_data             where data/<name> is (root=, $SPR_DATA, the repository's data/)
    prune_llm             one-shot MLP-neuron pruning to a parameter budget, with a certificate
    llm_curves            the dense keep-k curves prune_llm allocates over (shareable)
    LLMPrunePlan          prune_llm's plan (apply -> the smaller model), LLMCertificate its proof
    LLMCurves             llm_curves' result
    mlp_parameters        the MLP parameters of a Llama-style model (what the budget counts)
    save_pruned           a smaller model as per-layer widths (JSON) + safetensors, atomically
    load_pruned           rebuild it
"""

from compress_extras.llm._austen import AUSTEN_NOVELS, austen_novels
from compress_extras.llm._files import find_data
from compress_extras.llm._models import linear_layers, load_minilm, load_smollm2, tiny_llama
from compress_extras.llm._perplexity import fixed_windows, perplexity
from compress_extras.llm._prune import prune_llm
from compress_extras.llm._prune_curves import LLMCurves, llm_curves
from compress_extras.llm._prune_plan import LLMCertificate, LLMPrunePlan
from compress_extras.llm._pruned_model import load_pruned, mlp_parameters, save_pruned
from compress_extras.llm._rdata import read_lazyload

__all__ = [
    "AUSTEN_NOVELS",
    "LLMCertificate",
    "LLMCurves",
    "LLMPrunePlan",
    "austen_novels",
    "find_data",
    "fixed_windows",
    "linear_layers",
    "llm_curves",
    "load_minilm",
    "load_pruned",
    "load_smollm2",
    "mlp_parameters",
    "perplexity",
    "prune_llm",
    "read_lazyload",
    "save_pruned",
    "tiny_llama",
]
