"""The real models, offline from data/ (skipped with the reason when `make data` has not run):
SmolLM2 reads as Q4_1 blocks and predicts Austen well; ICQuant codes its layers losslessly;
MiniLM embeds paraphrases closer than unrelated text."""

import pytest
import torch
import torch.nn.functional as F

from compress_extras.icquant import ICQuantized, ICQuantizer
from compress_extras.llm import (
    austen_novels,
    fixed_windows,
    linear_layers,
    load_minilm,
    load_smollm2,
    perplexity,
)
from spr.data import DatasetNotFoundError

pytest.importorskip("transformers", reason="the llm extra (transformers, gguf) is not installed")


@pytest.fixture(scope="module")
def smollm2():
    try:
        model, tokenizer = load_smollm2()
        novels = austen_novels()
    except DatasetNotFoundError as error:
        pytest.skip(f"SmolLM2 or the Austen text is not installed (make data): {error}")
    return model, tokenizer, novels


def test_smollm2_is_the_q4_1_checkpoint(smollm2):
    model, _, _ = smollm2
    names = linear_layers(model)
    assert len(names) == 210 and "lm_head" not in names  # 30 layers x 7; lm_head is tied
    assert len(linear_layers(model, skip_tied=False)) == 211
    W = model.get_submodule("model.layers.3.mlp.up_proj").weight.detach()
    blocks = W.reshape(-1, 32)  # Q4_1: 32 weights share a scale and a minimum -> <= 16 values
    distinct = torch.tensor([len(torch.unique(b)) for b in blocks[:500]])
    assert int(distinct.max()) <= 16 and float(distinct.float().mean()) > 8


def test_smollm2_perplexity_and_an_icquant_layer(smollm2):
    model, tokenizer, novels = smollm2
    ids = torch.tensor(tokenizer(novels["persuasion"][:20000]).input_ids)
    windows = fixed_windows(ids, 64, 2)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    shipped = perplexity(model, windows, progress=False)
    assert 5 < shipped < 200  # a fluent model on Austen's prose (about 40 on 24 x 256 tokens)
    layer = model.get_submodule("model.layers.0.mlp.down_proj")
    W = layer.weight.detach().clone()
    coded = ICQuantizer(3, 0.05, "lloyd").quantize(W)
    assert torch.equal(ICQuantized.from_bytes(coded.to_bytes()).dequantize(), coded.dequantize())
    assert 3.2 < coded.bits_per_weight < 3.5
    try:
        with torch.no_grad():
            layer.weight.copy_(coded.dequantize())
        quantized = perplexity(model, windows, progress=False)
    finally:
        with torch.no_grad():
            layer.weight.copy_(W)
    assert quantized != shipped and quantized < 2 * shipped  # one 3.3-bit layer: a small change


def test_minilm_embeds_paraphrases_closer():
    try:
        model, tokenizer = load_minilm()
    except DatasetNotFoundError as error:
        pytest.skip(f"MiniLM is not installed (make data): {error}")
    assert len(linear_layers(model)) == 37  # 6 layers x 6 + the pooler
    sentences = ["A man is playing a guitar.", "Someone plays the guitar.",
                 "The stock market fell sharply today."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    emb = F.normalize((tokens * mask).sum(1) / mask.sum(1), dim=1)  # mean pooling, as shipped
    similar, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert similar > 0.5 > unrelated
