"""The claims the lab tests, in our words, and the experiment that tests each.

Every figure names the claim it bears on (`figure(..., claim=...)`); the report states each claim,
the experiment, then the findings its figures computed. A claim whose stage has no figure or no
results yet is still stated, with what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    stage: str  # the stage whose results test it (for the "not measured yet" message)
    statement: str
    experiment: str


CLAIMS = [
    Claim(
        "learning",
        "Next-token prediction is a learning signal",
        "train",
        "Lowering one number, the average negative log-probability a model gives each next token of "
        "its training text, is enough to teach it the regularities of that text: the probability it "
        "assigns to unseen text of the same kind rises too.",
        "A GPT-style transformer starts from random weights and is trained on the synthetic corpus "
        "(biographies of fictional people and question-answer lines) with the cross-entropy of the "
        "next token as its only objective. The loss is recorded on training batches and on "
        "validation text: new renderings (other wordings, other order) of the same people's "
        "biographies, never trained on.",
    ),
    Claim(
        "frequency",
        "How often a fact was seen decides whether it is known",
        "train",
        "Pretraining stores facts in proportion to their repetition. A fact read many times is "
        "reproduced; a fact read once is mostly not, and a question about it can only be met with "
        "a guess. The share of facts seen exactly once therefore bounds how much a model can know.",
        "Each fictional person's biography appears k times in the corpus, with k drawn from the "
        "params' mention mix. After pretraining every fact is probed twice: inside a fresh "
        "biography (are the value's tokens the greedy prediction?) and as a held-out question "
        "(is the greedy answer exact?). Recall is cut by k.",
    ),
    Claim(
        "incentives",
        "Rewards that ignore being wrong teach a model to guess",
        "evaluate",
        "Whether a model admits ignorance depends on what post-training pays for. If a wrong answer "
        "scores the same as 'I don't know', guessing never loses, so a model learns to answer "
        "everything and hallucinates where it does not know. Charging for wrong answers makes "
        "abstaining the better move below a confidence threshold.",
        "One supervised model is post-trained with on-policy policy gradient under several reward "
        "schemes: binary (right 1, otherwise 0), penalised (a wrong answer costs t/(1-t) for a "
        "confidence target t) and calibrated (an answer with a stated confidence, rewarded by a "
        "proper scoring rule), each with several seeds. Every model answers held-out questions, "
        "including questions about names it never saw, and each answer is graded correct, wrong "
        "(a hallucination) or abstained.",
    ),
    Claim(
        "calibration",
        "Confidence can be trained to mean something",
        "evaluate",
        "A model's probability of being right can be read off it and checked: when it says 70%, it "
        "should be right about 70% of the time. Rewarding a stated confidence with a proper scoring "
        "rule should bring the two together.",
        "For each model and scheme, the confidence of every attempted answer (the sequence "
        "probability, or the stated confidence under the calibrated scheme) is binned and compared "
        "with the share of answers in the bin that are right (a reliability diagram); expected "
        "calibration error summarises the gaps.",
    ),
    Claim(
        "nondeterminism",
        "Batching changes greedy outputs",
        "nondeterminism",
        "Even with temperature zero, the same prompt can get a different answer: the batch it is "
        "served in changes the shapes of the matrix products, hence the order of floating-point "
        "sums, hence the logits by a rounding error; where two tokens are nearly tied, the choice "
        "flips and the rest of the text follows. Kernels that sum in the same order whatever the "
        "batch remove the effect.",
        "The same prompts are decoded greedily at several batch sizes, in float32 and bfloat16, with "
        "the standard kernels and with a batch-invariant mode; each completion is compared with the "
        "one decoded alone.",
    ),
    Claim(
        "storage",
        "MLPs store facts; attention moves them",
        "mechanisms",
        "A transformer's two kinds of layer do different work. The feed-forward (MLP) layers hold "
        "associations learned in training, such as which city goes with which person; attention "
        "heads carry information between positions, such as the name in a question to the place "
        "where the answer is produced. Removing an MLP should therefore cost facts more than "
        "removing one head.",
        "On the pretrained model, each layer's MLP and each attention head is ablated in turn (its "
        "output replaced by its mean over real tokens). Fact recall on held-out biographies "
        "(greedy next tokens reproduce a value) and the loss on all other tokens are measured "
        "against the intact model, with paired bootstrap intervals.",
    ),
    Claim(
        "heads",
        "Attention heads specialise",
        "mechanisms",
        "Different heads learn different jobs: some look at the previous token, some at the start of "
        "the text, some at the entity the text is about.",
        "At the position where a question's answer is produced, each head's attention is split by "
        "the role of the positions it lands on (the subject's name, the word naming the attribute, "
        "the previous token, the first token, itself, the rest) and compared with uniform attention.",
    ),
    Claim(
        "decoding",
        "Decoding trades accuracy for diversity",
        "mechanisms",
        "How the next token is chosen from the model's distribution matters as much as the "
        "distribution: always taking the most likely token is repetitive but safe; sampling, more so "
        "at higher temperature, varies the text and lets unlikely, often wrong tokens through.",
        "The fine-tuned model answers the evaluation questions, and the pretrained model writes "
        "biographies from a person's name, under greedy decoding, sampling at several temperatures, "
        "top-k and top-p. Answers are graded; biographies are scored for distinct bigrams and for "
        "the share of stated facts that are right.",
    ),
    Claim(
        "in_context",
        "A model uses its context without learning from it",
        "mechanisms",
        "What a model is given in its prompt shapes its output for that request only: it can answer "
        "from a passage it never saw in training, while its weights, and so everything it will do "
        "for the next request, stay exactly as they were.",
        "Questions about never-seen names are asked with nothing before them, with the person's "
        "biography before them, and with another never-seen person's biography (a control), to the "
        "pretrained and the fine-tuned model. Pretraining holds reading-comprehension documents "
        "(a new person's biography, then a question on it; params data.reading_docs). The weights "
        "are hashed before and after.",
    ),
    Claim(
        "order",
        "Word order needs positional information",
        "positions",
        "Attention on its own treats its input as a set: without something that marks where each "
        "token sits, a model cannot tell 'A mentored B' from 'B mentored A'. Positional encodings "
        "(a learned table, rotations) supply it; work on models without them finds that a causal "
        "mask alone already lets a model infer position, since each position sees a different "
        "number of tokens.",
        "The same model shape is pretrained on the same tokens with learned, rotary and no "
        "positional encoding, and as an order-blind control with neither positions nor a causal "
        "mask. The world holds order-sensitive facts (relations 'A mentored B' whose reverse is "
        "false; params data.relations). For each relation seen in training, the probe asks whether "
        "the true sentence is more likely than the reversed one; pairs of unrelated people are the "
        "chance control. Held-out loss and fact recall (the true value ranked first among "
        "candidates) are measured beside it.",
    ),
    Claim(
        "agent",
        "An agent is a model, a tool and a loop",
        "agent",
        "Nothing more than a loop turns a language model into an agent: the model's output is read "
        "as either an answer or a request to run a tool, the tool's result is written back into the "
        "prompt, and the model is asked again. The model itself is unchanged by this; what it can "
        "answer now depends on what the tool returns, not only on what its weights hold.",
        "The fine-tuned QA model is fine-tuned once more on tool-use traces of the fine-tune split's "
        "questions (call lookup(name), read the record it returns, answer; 'no record' for a "
        "never-seen name, then 'I don't know'). It then runs in the loop on the evaluation questions, "
        "with a step limit; malformed or unknown tool calls come back as error observations. The "
        "same fine-tuned model answering from its weights alone is the comparison.",
    ),
]

