"""`nextlab sample`: continue prompts with a trained checkpoint (a look at what a model says)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sample",
        help="generate text from a checkpoint",
        description="Continue prompts with a checkpoint: greedy (--temperature 0) or sampled with "
        "temperature / top-k / top-p. Each prompt is encoded as <|bos|> text; with --question it is "
        "wrapped in the QA format <|bos|><|question|>text<|answer|>. Prints one line per sample.",
    )
    parser.add_argument("--ckpt", type=Path, required=True, help="checkpoint (ckpt.pt)")
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json of the same study")
    parser.add_argument("--prompt", action="append", default=[], help="prompt text (repeatable); default: empty")
    parser.add_argument("--question", action="store_true", help="wrap each prompt in the QA format")
    parser.add_argument("--num-samples", type=int, default=1, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole prefix each token")
    parser.add_argument("--json", action="store_true", help="one JSON object per sample instead of text")
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from nextlab.errors import NextlabError
    from nextlab.generate import generate
    from nextlab.model.checkpoint import load_model
    from nextlab.model.device import resolve_device
    from nextlab.tokenizer import BOS_ID, EOS_ID, load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.num_samples < 1 or args.max_new_tokens < 1:
        raise NextlabError("--num-samples and --max-new-tokens must be at least 1")
    if args.temperature < 0 or (args.top_p is not None and not 0 < args.top_p <= 1):
        raise NextlabError("--temperature must be >= 0 and --top-p in (0, 1]")
    tok = load_tokenizer(args.tokenizer)
    device = resolve_device(args.device)
    model, ckpt = load_model(args.ckpt, device)
    if tok.get_vocab_size() != model.config.vocab_size:
        raise NextlabError(
            f"{args.tokenizer}: {tok.get_vocab_size()} tokens, but {args.ckpt} was trained with "
            f"{model.config.vocab_size}; use the tokenizer of the same study"
        )
    texts = args.prompt or [""]
    wrapped = [f"<|question|>{t}<|answer|>" if args.question else t for t in texts]
    prompts = [[BOS_ID, *tok.encode(t, add_special_tokens=False).ids] for t in wrapped]
    too_long = [t for t, p in zip(texts, prompts) if len(p) >= model.config.block_size]
    if too_long:
        raise NextlabError(f"prompt {too_long[0][:40]!r} does not fit the model's context of {model.config.block_size} tokens")
    batch = [p for p in prompts for _ in range(args.num_samples)]
    generator = torch.Generator(device=device).manual_seed(args.seed)
    out = generate(model, batch, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, eos_id=EOS_ID, generator=generator, use_cache=not args.no_cache)
    for i, ids in enumerate(batch):
        text = tok.decode(out.completion(i), skip_special_tokens=False)
        prompt_text = texts[i // args.num_samples]
        if args.json:
            print(json.dumps({"prompt": prompt_text, "completion": text, "tokens": out.tokens[i],
                              "logprob": out.total_logprob(i), "finished": out.finished[i]}))
        else:
            print(f"{prompt_text}\033[1m{text}\033[0m" if sys.stdout.isatty() else f"{prompt_text}{text}")
    return 0
