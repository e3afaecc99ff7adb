#!/usr/bin/env python3
"""PyTorch reference for `midtrain eval` and `midtrain generate`: writes the golden fixture EvalGoldenTest checks.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install torch transformers tokenizers safetensors
    /tmp/v/bin/python scripts/golden/make_eval_golden.py

Outputs (committed; the Java tests never run Python), in java/src/test/resources/golden/eval/:
    config.json, model.safetensors   a small random Llama (Hugging Face LlamaForCausalLM layout, fp32 weights)
    eval_golden.json                 per item and choice: token ids and log-likelihoods of the shipped sample
                                     (data/eval-sample/test.jsonl) at 0 and 2 shots; acc and acc_norm; greedy
                                     generations of 64 tokens with the top-1/top-2 logit margin of every step

The model is Hugging Face's LlamaForCausalLM itself (eager attention), run in float64 from the fp32 weights, so the
reference carries no fp32 rounding; the engine (fp32) must match it within 1e-4 per choice.

Scoring rules (the engine's dev.midtrain.eval.McPrompt implements the same):
  - prompt  = shots, each "Question: {q}\\nAnswer: {answer text}\\n\\n", then "Question: {q}\\nAnswer:";
    continuation = " " + choice text. Context ids = [<|begin_of_text|>] + encode(prompt), continuation ids =
    encode(continuation), each encoded on its own without special tokens.
  - k-shot: the dev items of the same subject in file order, shuffled by Fisher-Yates driven by SplitMix64(seed),
    first k taken (the same shots for every test item of a subject).
  - acc: argmax of the summed log-likelihood; acc_norm: argmax of log-likelihood / characters of the continuation
    (code points); ties go to the first choice.
"""
import json
import os

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "java", "src", "test", "resources", "golden", "eval")
MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def shuffled(items, seed):
    out, state = list(items), seed & MASK
    for i in range(len(out) - 1, 0, -1):
        state, r = splitmix64(state)
        j = r % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def answer_index(it):
    a = it["answer"]
    return a if isinstance(a, int) else "ABCDEFGHIJ".index(a)


def prompt(it, shots):
    s = "".join(f"Question: {sh['question']}\nAnswer: {sh['choices'][answer_index(sh)]}\n\n" for sh in shots)
    return s + f"Question: {it['question']}\nAnswer:"


def main():
    torch.manual_seed(1234)
    cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, rope_theta=10000.0, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu",
                      bos_token_id=510, eos_token_id=511, torch_dtype="float32")
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():                                  # peaked logits: std 0.25 matrices, norms around 1
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.25 * torch.randn_like(p))
    os.makedirs(OUT, exist_ok=True)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items() if "rotary" not in k}
    save_file(state, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    d = cfg.to_dict()
    keep = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "rope_theta", "rms_norm_eps", "tie_word_embeddings",
            "hidden_act", "bos_token_id", "eos_token_id", "attention_bias", "mlp_bias"]
    conf = {k: d[k] for k in keep if k in d}
    conf["rope_theta"] = 10000.0
    conf.update({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "torch_dtype": "float32"})
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
    model = model.to(torch.float64)

    tok = Tokenizer.from_file(os.path.join(ROOT, "data", "tokenizer", "tokenizer.json"))
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids
    BOS = 510

    @torch.no_grad()
    def logprobs(ids):
        logits = model(torch.tensor([ids])).logits[0]      # [T, V] float64
        return torch.log_softmax(logits, dim=-1)

    test = [json.loads(l) for l in open(os.path.join(ROOT, "data", "eval-sample", "test.jsonl"), encoding="utf-8")]
    dev = [json.loads(l) for l in open(os.path.join(ROOT, "data", "eval-sample", "dev.jsonl"), encoding="utf-8")]
    seed = 1234
    runs = []
    for k in (0, 2):
        shots_of = {}
        for subj in sorted({it["subject"] for it in test}):
            shots_of[subj] = shuffled([x for x in dev if x["subject"] == subj], seed)[:k]
        items, correct, correct_norm = [], 0, 0
        for idx, it in enumerate(test):
            ctx = [BOS] + enc(prompt(it, shots_of[it["subject"]]))
            lls, conts = [], []
            for ch in it["choices"]:
                cont = enc(" " + ch)
                lp = logprobs(ctx + cont)
                ll = sum(lp[len(ctx) - 1 + j, cont[j]].item() for j in range(len(cont)))
                lls.append(ll)
                conts.append(cont)
            gold = answer_index(it)
            pred = max(range(len(lls)), key=lambda i: (lls[i], -i))
            norm = [ll / len(" " + ch) for ll, ch in zip(lls, it["choices"])]
            pred_n = max(range(len(norm)), key=lambda i: (norm[i], -i))
            correct += pred == gold
            correct_norm += pred_n == gold
            srt = sorted(lls, reverse=True)
            items.append({"index": idx, "context": ctx, "continuations": conts, "loglikelihoods": lls,
                          "pred": pred, "pred_norm": pred_n, "gap": srt[0] - srt[1]})
        runs.append({"shots": k, "seed": seed, "acc": correct / len(test), "acc_norm": correct_norm / len(test),
                     "correct": correct, "correct_norm": correct_norm, "items": items,
                     "shot_indices": {s: [dev.index(x) for x in v] for s, v in shots_of.items()}})
        print(f"{k}-shot: acc {correct}/{len(test)}, acc_norm {correct_norm}/{len(test)}, min gap {min(i['gap'] for i in items):.2e}")

    gens = []
    for text in ("Photosynthesis converts light into", "细胞是生命的基本单位，"):
        ids = [BOS] + enc(text)
        out, margins = [], []
        with torch.no_grad():
            for _ in range(64):                             # recompute the whole prefix each step (no cache)
                logits = model(torch.tensor([ids + out])).logits[0, -1]
                top = torch.topk(logits, 2)
                margins.append((top.values[0] - top.values[1]).item())
                out.append(int(top.indices[0]))
        gens.append({"prompt": text, "prompt_ids": ids, "tokens": out, "min_margin": min(margins)})
        print(f"generation {text!r}: min top-1/top-2 margin {min(margins):.3e}")
    with open(os.path.join(OUT, "eval_golden.json"), "w", encoding="utf-8") as f:
        json.dump({"torch": torch.__version__, "runs": runs, "generations": gens}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
