"""Shared helpers for the adapter tests: offline tiny tokenizers and models, a reference solver.

Nothing here touches a hub: tokenizers are trained from scratch on a few sentences with
``tokenizers`` and models are randomly initialised from tiny configs.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

CORPUS = [
    "The cafe was warm and lovely. Great coffee, kind staff, wonderful cakes!",
    "The service was slow and the soup was cold. I hated the noise.",
    "Write a short review of a cafe. Be brief. Be warm and positive.",
    "A bad day, a good day, an ordinary day. The end.",
    "Hello world!\nHow are you today? I am fine, thank you very much.",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e na\u00efve \u2014 \u00fcber \U0001f600 emoji.",
]
SPECIALS = ["<pad>", "<eos>", "<bos>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer(vocab_size: int = 300, model: str = "bpe"):
    """A byte-level BPE (or a SentencePiece-style unigram) tokenizer trained on CORPUS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if model == "bpe":
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:  # SentencePiece-like: Metaspace + byte fallback
        tk = Tokenizer(models.BPE(byte_fallback=True))
        tk.pre_tokenizer = pre_tokenizers.Metaspace()
        tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                        decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIALS + [f"<0x{b:02X}>" for b in range(256)])
    tk.train_from_iterator(CORPUS * 3, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>",
                                  bos_token="<bos>")
    tok.padding_side = "left"
    return tok


def tiny_llama(tok, seed: int = 0, vocab_size: int | None = None):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size or len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model


def tiny_gpt2(tok, seed: int = 1, vocab_size: int | None = None):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size or len(tok), n_embd=32, n_layer=2, n_head=4,
                     n_positions=256, pad_token_id=tok.pad_token_id,
                     eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    model = GPT2LMHeadModel(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model


def numpy_solve_batch(v, utilities, beta, mask=None, **_):
    """Row-by-row reference with the contract of ``cage_games.torch.solve_batch``.

    Uses the numpy core (``cage_games.solve``); independent of the batched torch kernel.
    """
    import torch

    from cage_games import Agent, CommonAgencyGame, Principal
    from cage_games.solvers import solve

    B, m, n = utilities.shape
    betas = torch.as_tensor(beta, dtype=torch.float64).expand(B)
    if mask is None:
        mask = torch.ones((B, n), dtype=torch.bool)
    logp = torch.full((B, n), -np.inf, dtype=torch.float64)
    thr = torch.zeros((B, m), dtype=torch.float64)
    res = torch.zeros(B, dtype=torch.float64)
    nit = torch.zeros(B, dtype=torch.long)
    ok = torch.zeros(B, dtype=torch.bool)
    for b in range(B):
        mk = mask[b].numpy()
        vv = v[b].double().numpy()[mk]
        uu = utilities[b].double().numpy()[:, mk]
        game = CommonAgencyGame(
            Agent(utility=vv, beta=float(betas[b])),
            [Principal(utility=uu[i]) for i in range(m)])
        r = solve(game)
        pol = np.zeros(n)
        pol[mk] = r.policy
        with np.errstate(divide="ignore"):
            logp[b] = torch.as_tensor(np.log(pol))
        thr[b] = torch.as_tensor(np.array(r.thresholds))
        res[b], nit[b], ok[b] = r.residual, r.nit, bool(r.success)
    return SimpleNamespace(log_policy=logp.to(v.dtype), thresholds=thr.to(v.dtype),
                           residual=res, nit=nit, success=ok)


def chat_inputs(tok, prompts, template: bool = False):
    """Left-padded batch of prompts (plain text) as tensors."""
    return tok(list(prompts), return_tensors="pt", padding=True)


#: A ChatML template for the tiny tokenizers (the test models' chat format).
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chat_tokenizer():
    """:func:`tiny_tokenizer` with the ChatML template (the ``tok`` fixture of conftest)."""
    t = tiny_tokenizer()
    t.chat_template = CHAT
    return t
