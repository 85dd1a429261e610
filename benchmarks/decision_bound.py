"""How much of the threshold policy can a decision learned on the RL pool reach on new people?

    python benchmarks/decision_bound.py --study default          # after `make study` (the SFT model)

Post-training must learn one thing per question: answer or say "I don't know". Greedy decoding
makes that choice at the first answer token, from what the model computes there. This script asks,
with no post-training at all, how well the choice can be made from that information when it is
learned on the RL pool (the people post-training sees) and used on the calibration split (people
it never saw). Never the evaluation split. Rows, for each target t:

* reference: the SFT model's threshold policies (no learning): its best guess answered iff the
  guess's sequence probability, or its probability normalised over the attribute's candidate
  values, exceeds t (`nextlab.qa.metrics.threshold_policy`);
* offset: the first-token rule a single learned number allows: answer iff the best non-abstaining
  first-token logit exceeds the logit of "I don't know" by more than an offset; the offset that
  scores best on the RL pool, used on the calibration split ("best on calibration" is the
  ceiling of the rule, chosen on the split it is scored on);
* probe: a logistic regression on the final hidden state at the answer position (d_model
  numbers), trained on whether the RL pool's forced answers are right, answering iff its
  probability exceeds t.

Each prints the score at t on the calibration split and the AUROC of its confidence against
correctness, beside the same on the RL pool (in-sample for the learned rules). A learned rule that
separates the RL pool well and the calibration split poorly was learned per person.

A second table asks the same of a stated confidence (the calibrated scheme's `<|confidence|>`):
its first token is a softmax readout of the final hidden state at the `<|confidence|>` position,
after the model's own answer. A logistic regression on that hidden state, trained on whether the
RL pool's answers are right, is the best such readout the pool can teach; the answer's own
sequence probability (no learning) is the reference. AUROC and ECE on the calibration split.
Prints figures; asserts nothing. One thread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from nextlab.config import load_study
from nextlab.data.world import IDK, World
from nextlab.generate import EOS_ID as EOS
from nextlab.model.checkpoint import load_model
from nextlab.posttrain.onpolicy import sample
from nextlab.qa.answers import candidate_columns
from nextlab.qa.codec import QACodec, answer_end, graded
from nextlab.qa.inputs import read_qa, require_split
from nextlab.qa.metrics import ece, threshold_policy, wrong_penalty
from nextlab.tokenizer import load_tokenizer
from nextlab.tokenizer.bpe import CONFIDENCE_ID

TARGETS = (0.5, 0.75, 0.9)
OFFSETS = np.linspace(-12.0, 12.0, 481)
PROBE_C = (0.001, 0.01, 0.1, 1.0)  # inverse L2 strength of the probe


@torch.no_grad()
def first_token_view(model: torch.nn.Module, codec: QACodec, rows: pd.DataFrame, batch: int = 64) -> pd.DataFrame:
    """Per question: the forced answer (greedy, "I don't know" barred as the first token), whether
    it is right and its sequence probability (its tokens and the one that ends it), the first-token
    logit gap (best other token minus "I don't know"), and the final hidden state at the answer
    position and at a `<|confidence|>` token placed after the answer."""
    abstain = codec.answer_body(IDK)[0]
    captured: dict[str, torch.Tensor] = {}
    hook = model.ln_f.register_forward_hook(lambda module, args, out: captured.__setitem__("h", out))
    out_rows = []
    try:
        for start in range(0, len(rows), batch):
            chunk = rows.iloc[start : start + batch]
            prompts = [codec.prompt(q) for q in chunk["question"]]
            # Temperature 1e-6: the argmax, through the same sampler post-training uses.
            drawn = sample(model, prompts, 16, 1e-6, banned_first=abstain, generator=torch.Generator().manual_seed(0))
            first = drawn.logits[:, 0, :]
            others = first.index_fill(1, torch.tensor([abstain]), float("-inf")).amax(1)
            gap = (others - first[:, abstain]).tolist()
            logp = torch.log_softmax(drawn.logits, dim=-1)
            for i, (tokens, gold) in enumerate(zip(drawn.tokens, chunk["answer"])):
                end = answer_end(tokens)
                seq_logp = float(sum(logp[i, j, tokens[j]] for j in range(end)))
                body = tokens[: end - 1] if end and tokens[end - 1] in (CONFIDENCE_ID, EOS) else tokens[:end]
                model(torch.tensor([prompts[i] + body + [CONFIDENCE_ID]]))
                h = captured["h"][0].float()
                out_rows.append({"right": graded(codec.decode(tokens), gold) == "correct", "gap": gap[i],
                                 "seq_prob": float(np.exp(seq_logp)),
                                 "hidden": h[len(prompts[i]) - 1].numpy().copy(), "hidden_conf": h[-1].numpy().copy()})
    finally:
        hook.remove()
    return pd.DataFrame(out_rows)


def scores(conf: np.ndarray, right: np.ndarray, t: float) -> float:
    """Mean score at t of answering iff conf > t (conf in [0, 1])."""
    return float(threshold_policy(conf, right, t).mean())


def offset_scores(gap: np.ndarray, right: np.ndarray, t: float) -> np.ndarray:
    """Mean score at t of answering iff gap > offset, for every offset of OFFSETS."""
    answered = gap[None, :] > OFFSETS[:, None]
    return np.where(answered, np.where(right[None, :], 1.0, -wrong_penalty(t)), 0.0).mean(1)


def auroc(right: np.ndarray, conf: np.ndarray) -> float:
    return float(roc_auc_score(right, conf)) if 0 < right.sum() < len(right) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="default")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    study = load_study(Path("params") / f"{args.study}.yaml")
    results = Path("results") / study.study
    model_name = args.model or next(iter(study.models))
    qa_path = results / "data" / "qa.parquet"
    qa = read_qa(qa_path)
    world = World.load(results / "data" / "world.json")
    codec = QACodec(load_tokenizer(results / "tokenizer" / "tokenizer.json"))
    model, _ = load_model(results / "models" / model_name / "sft" / "ckpt.pt", torch.device("cpu"))
    split = {name: require_split(qa, name, qa_path).reset_index(drop=True) for name in ("rl", "calibration")}
    view = {name: first_token_view(model, codec, rows) for name, rows in split.items()}
    cand = {name: candidate_columns(model, codec, rows["question"].tolist(), rows["attribute"].tolist(),
                                    rows["answer"].tolist(), rows["answer"].tolist(), world.vocabularies)
            for name, rows in split.items()}
    rl, cal = view["rl"], view["calibration"]
    print(f"study {study.study}, model {model_name}: RL pool {len(rl)} questions, calibration {len(cal)}; "
          f"forced answers right: {rl['right'].mean():.3f} / {cal['right'].mean():.3f}")
    print("| decision rule | learned on | AUROC RL pool | AUROC calibration | "
          + " | ".join(f"score t={t:g} (calibration)" for t in TARGETS) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(TARGETS))

    for column, name in (("guess_seq_confidence", "sequence probability"), ("guess_confidence", "candidate probability")):
        conf = {s: cand[s][column].to_numpy(float) for s in cand}
        right = {s: cand[s]["guess_correct"].to_numpy(bool) for s in cand}
        cells = [f"{scores(conf['calibration'], right['calibration'], t):.3f}" for t in TARGETS]
        print(f"| reference: threshold on the {name} | nothing | "
              f"{auroc(right['rl'], np.nan_to_num(conf['rl'])):.3f} | "
              f"{auroc(right['calibration'], np.nan_to_num(conf['calibration'])):.3f} | " + " | ".join(cells) + " |")

    r_rl, r_cal = rl["right"].to_numpy(bool), cal["right"].to_numpy(bool)
    g_rl, g_cal = rl["gap"].to_numpy(float), cal["gap"].to_numpy(float)
    chosen = [OFFSETS[int(np.argmax(offset_scores(g_rl, r_rl, t)))] for t in TARGETS]
    cells = [f"{offset_scores(g_cal, r_cal, t)[int(np.argmin(np.abs(OFFSETS - o)))]:.3f} (offset {o:+.2f})"
             for t, o in zip(TARGETS, chosen)]
    print(f"| first-token logit gap > offset | RL pool (1 number) | {auroc(r_rl, g_rl):.3f} | {auroc(r_cal, g_cal):.3f} | "
          + " | ".join(cells) + " |")
    # How much of what it knows best each rule still answers (issue 11 asks >= 60% at t = 0.75).
    k16 = (split["calibration"]["mentions"] == split["calibration"]["mentions"].max()).to_numpy()
    t75 = TARGETS.index(0.75)
    answered = {"offset rule": g_cal[k16] > chosen[t75],
                "sequence-probability threshold": np.nan_to_num(cand["calibration"]["guess_seq_confidence"]
                                                                .to_numpy(float))[k16] > 0.75,
                "candidate-probability threshold": np.nan_to_num(cand["calibration"]["guess_confidence"]
                                                                 .to_numpy(float))[k16] > 0.75}
    print("share of the calibration split's facts seen most often answered at t = 0.75: "
          + ", ".join(f"{name} {a.mean():.2f}" for name, a in answered.items()) + f" (n = {int(k16.sum())})")
    cells = [f"{offset_scores(g_cal, r_cal, t).max():.3f}" for t in TARGETS]
    print("| first-token logit gap > offset | calibration (its ceiling) | | | " + " | ".join(cells) + " |")

    x_rl, x_cal = np.stack(rl["hidden"].to_list()), np.stack(cal["hidden"].to_list())
    for c in PROBE_C:
        probe = LogisticRegression(C=c, max_iter=5000).fit(x_rl, r_rl)
        p_rl, p_cal = probe.predict_proba(x_rl)[:, 1], probe.predict_proba(x_cal)[:, 1]
        cells = [f"{scores(p_cal, r_cal, t):.3f}" for t in TARGETS]
        print(f"| linear probe on the final hidden state, C={c:g} | RL pool ({x_rl.shape[1] + 1} numbers) | "
              f"{auroc(r_rl, p_rl):.3f} | {auroc(r_cal, p_cal):.3f} | " + " | ".join(cells) + " |")

    print("\nA stated confidence after the forced answer: AUROC against correctness, ECE (10 equal-width bins)")
    print("| confidence | learned on | AUROC RL pool | AUROC calibration | ECE calibration |")
    print("|---|---|---:|---:|---:|")
    q_rl, q_cal = rl["seq_prob"].to_numpy(float), cal["seq_prob"].to_numpy(float)
    print(f"| reference: the answer's sequence probability | nothing | {auroc(r_rl, q_rl):.3f} | {auroc(r_cal, q_cal):.3f} | "
          f"{ece(q_cal, r_cal):.3f} |")
    c_rl, c_cal = np.stack(rl["hidden_conf"].to_list()), np.stack(cal["hidden_conf"].to_list())
    for c in PROBE_C:
        probe = LogisticRegression(C=c, max_iter=5000).fit(c_rl, r_rl)
        p_rl, p_cal = probe.predict_proba(c_rl)[:, 1], probe.predict_proba(c_cal)[:, 1]
        print(f"| linear probe at the <\\|confidence\\|> position, C={c:g} | RL pool ({c_rl.shape[1] + 1} numbers) | "
              f"{auroc(r_rl, p_rl):.3f} | {auroc(r_cal, p_cal):.3f} | {ece(p_cal, r_cal):.3f} |")


if __name__ == "__main__":
    main()
