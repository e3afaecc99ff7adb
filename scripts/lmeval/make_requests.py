"""Writes the scoring requests that lm-evaluation-harness 0.4.13's `local-completions` model sends, made by lm-eval's
own code (no HTTP): java/src/test/resources/lmeval/requests.jsonl, read by serve's ServeEdgesTest (and midtrain eval's window is checked against it there).

The model arguments are the ones docs/serve.md documents for the test model of ServeTest (max_seq_len 192):
  tokenizer=<dir with data/tokenizer/tokenizer.json>, add_bos_token=True, max_length=193 (= max_seq_len + 1),
  tokenized_requests=True (the default).
lm-eval tokenizes each (context, continuation) pair with `_encode_pair` (trailing spaces of the context move to the
continuation, the pair is encoded whole and split), left-truncates context + continuation to max_length - 1 tokens
(`batch_loglikelihood_requests`), and posts `_create_payload(...)`: token ids, echo true, max_tokens 1, logprobs 1.
It then sums token_logprobs[ctxlen:-1] (`parse_logprobs`): the last entry is the generated token it drops.

Pairs: short ones and ones whose context + continuation is 191..250 tokens, so that requests of exactly 192 tokens
(the context limit: the server must still generate the one token) and truncated ones are in the stream.

Run: python -m venv v && v/bin/pip install --no-deps lm-eval==0.4.13 && v/bin/pip install transformers requests tqdm \
     tenacity aiohttp && v/bin/python scripts/lmeval/make_requests.py
"""
import json
import os
import shutil
import sys
import tempfile

from lm_eval.models.openai_completions import LocalCompletionsAPI
import lm_eval

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "java", "src", "test", "resources", "lmeval", "requests.jsonl")
MAX_SEQ_LEN = 192


def main():
    tokdir = tempfile.mkdtemp()
    shutil.copy(os.path.join(ROOT, "data", "tokenizer", "tokenizer.json"), tokdir)
    with open(os.path.join(tokdir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                   "eos_token": "<|end_of_text|>", "model_max_length": MAX_SEQ_LEN}, f)
    lm = LocalCompletionsAPI(base_url="http://127.0.0.1:9/v1/completions", model="tiny", tokenizer=tokdir,
                             tokenizer_backend="huggingface", add_bos_token=True, max_length=MAX_SEQ_LEN + 1)
    pairs = [("Question: What is 2 + 2? Answer:", " 4"),
             ("Question: What is 2 + 2? Answer: ", "four"),           # a trailing space moves to the continuation
             ("Physics.", " The energy of a photon is h times nu."),
             ("", "Hello world")]                                       # an empty context: lm-eval's prefix token
    for total, cont in [(150, " B"), (191, " C"), (192, " D"), (193, " A"), (195, " carbon dioxide"), (250, " B")]:
        stem = "Question " + str(total) + ": the energy of a photon"
        for k in range(total):                                          # filler " a" until BOS + context + continuation = total
            c = stem + " a" * k + " Answer:"
            if len(lm.tok_encode(c + cont)) >= total:
                break
        assert len(lm.tok_encode(c + cont)) == total, (total, len(lm.tok_encode(c + cont)))
        pairs.append((c, cont))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        for i, (context, continuation) in enumerate(pairs):
            if context == "":
                cont_enc = lm.tok_encode(continuation, add_special_tokens=False)
                ctx_enc, cont_enc = ([lm.prefix_token_id], cont_enc)
            else:
                ctx_enc, cont_enc = lm._encode_pair(context, continuation)
            inputs, ctxlens, _ = lm.batch_loglikelihood_requests([[((context, continuation), ctx_enc, cont_enc)]])
            payload = lm._create_payload(inputs, generate=False, ctxlens=ctxlens, seed=lm._seed)
            n_spaces = len(context) - len(context.rstrip())              # what _encode_pair scores: the space moved
            ctx_text, cont_text = (context[:-n_spaces], context[-n_spaces:] + continuation) if n_spaces else (context, continuation)
            f.write(json.dumps({"context": ctx_text, "continuation": cont_text, "context_tokens": ctx_enc, "continuation_tokens": cont_enc, "ctxlen": ctxlens[0],
                                "payload": payload}) + "\n")
            print(i, len(ctx_enc) + len(cont_enc), "tokens ->", len(inputs[0]), "sent, ctxlen", ctxlens[0], file=sys.stderr)
    print("lm_eval", lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13", "->", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
