import pytest
import torch

from babyllama.config import ModelConfig
from babyllama.infer.generate import generate, sample_next
from babyllama.model import Llama


def _hf_twin(model: Llama):
    from transformers import LlamaConfig, LlamaForCausalLM

    from babyllama.modelio import hf_config_dict, weights_to_save

    hf = LlamaForCausalLM(LlamaConfig(**hf_config_dict(model.config))).eval()
    missing, unexpected = hf.load_state_dict(weights_to_save(model), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return hf


@pytest.mark.parametrize("tie, kv_heads", [(True, 2), (False, 4)])
def test_logits_equal_transformers(tie, kv_heads):
    torch.manual_seed(0)
    model = Llama(ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=kv_heads, vocab_size=300, max_seq_len=64,
                              tie_embeddings=tie)).eval()
    hf = _hf_twin(model)
    ids = torch.randint(0, 300, (3, 40))
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max() <= 1e-4


def test_loss_is_cross_entropy_of_logits():
    torch.manual_seed(0)
    model = Llama(ModelConfig(dim=32, n_layers=1, n_heads=2, vocab_size=50, max_seq_len=16)).eval()
    ids = torch.randint(0, 50, (2, 16))
    targets = ids.roll(-1, dims=1)
    targets[:, -1] = -100
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(ids).reshape(-1, 50), targets.reshape(-1))
        assert torch.allclose(model(ids, targets), expected, atol=1e-6)


def test_kv_cache_greedy_equals_full_recompute_and_transformers():
    torch.manual_seed(1)
    model = Llama(ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=120, max_seq_len=64)).eval()
    prompt = [1, 5, 9, 33]
    ours = generate(model, [prompt], 20, temperature=0)[0]
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(20):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    assert ours == ids[len(prompt):]
    hf = _hf_twin(model)
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert out[0, len(prompt):].tolist() == ours


def test_batched_left_padded_prompts_decode_as_alone():
    torch.manual_seed(2)
    model = Llama(ModelConfig(dim=64, n_layers=2, n_heads=4, vocab_size=100, max_seq_len=64)).eval()
    prompts = [[1, 4, 5, 6, 7, 8], [1, 9], [1, 3, 3]]
    together = generate(model, prompts, 12, temperature=0)
    alone = [generate(model, [p], 12, temperature=0)[0] for p in prompts]
    assert together == alone


def test_sampling_is_seeded_and_stops_at_eos():
    torch.manual_seed(3)
    model = Llama(ModelConfig(dim=32, n_layers=1, n_heads=2, vocab_size=40, max_seq_len=64)).eval()
    a = generate(model, [[1]], 30, temperature=1.0, top_k=10, top_p=0.9, seed=7)
    b = generate(model, [[1]], 30, temperature=1.0, top_k=10, top_p=0.9, seed=7)
    assert a == b
    stop = a[0][3] if len(a[0]) > 3 else a[0][0]
    cut = generate(model, [[1]], 30, temperature=1.0, top_k=10, top_p=0.9, seed=7, eos_id=stop)
    assert stop not in cut[0] and cut[0] == a[0][:a[0].index(stop)]


def test_top_k_and_top_p_restrict_choices():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]])
    gen = torch.Generator().manual_seed(0)
    picks = {int(sample_next(logits, 1.0, 2, None, gen)) for _ in range(200)}
    assert picks <= {0, 1} and len(picks) == 2
    picks = {int(sample_next(logits, 1.0, None, 0.5, gen)) for _ in range(50)}
    assert picks == {0}


def test_context_overflow_is_an_error():
    model = Llama(ModelConfig(dim=32, n_layers=1, n_heads=2, vocab_size=40, max_seq_len=8))
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros((1, 9), dtype=torch.long))


def test_guidance_follows_the_scaled_difference_of_the_two_prompts():
    torch.manual_seed(4)
    model = Llama(ModelConfig(dim=64, n_layers=2, n_heads=4, vocab_size=100, max_seq_len=64)).eval()
    prompts, twins, scale = [[1, 7, 8, 9, 10], [1, 20]], [[1, 3], [1, 5, 6, 7]], 3.0
    guided = generate(model, prompts, 10, temperature=0, guidance_scale=scale, unconditional=twins)
    for prompt, twin, out in zip(prompts, twins, guided):  # reference: full recomputation, one prompt at a time
        ids, twin_ids = list(prompt), list(twin)
        with torch.no_grad():
            for _ in range(10):
                conditional = model(torch.tensor([ids]))[0, -1].log_softmax(-1)
                plain = model(torch.tensor([twin_ids]))[0, -1].log_softmax(-1)
                token = int((plain + scale * (conditional - plain)).argmax())
                ids.append(token)
                twin_ids.append(token)
        assert out == ids[len(prompt):]
    # The twin equal to the prompt leaves nothing to amplify: plain decoding.
    assert generate(model, prompts, 10, temperature=0, guidance_scale=scale, unconditional=prompts) == \
        generate(model, prompts, 10, temperature=0)
    with pytest.raises(ValueError, match="unconditional"):
        generate(model, prompts, 10, guidance_scale=2.0)
