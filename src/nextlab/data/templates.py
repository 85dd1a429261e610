"""Sentence and question templates. Each fact has several paraphrases, all with the value after
the name, so a reader of the name can predict the value (the direction models can learn).

>>> render_fact("birth_city", 0, "Ada Quill", "Veltmor")
'Ada Quill was born in the city of Veltmor.'
>>> question("employer", "Ada Quill")
'Which company employs Ada Quill?'
"""

from __future__ import annotations

BIO_TEMPLATES: dict[str, list[str]] = {
    "birth_year": [
        "{name} was born in the year {value}.",
        "{name} came into the world in {value}.",
        "The birth year of {name} is {value}.",
        "{name}'s year of birth was {value}.",
    ],
    "birth_city": [
        "{name} was born in the city of {value}.",
        "{name} is a native of {value}.",
        "The birthplace of {name} is {value}.",
        "{name} first saw daylight in {value}.",
    ],
    "occupation": [
        "{name} works as a {value}.",
        "{name} earns a living as a {value}.",
        "By trade, {name} is a {value}.",
        "The occupation of {name} is {value}.",
    ],
    "employer": [
        "{name} is employed by {value}.",
        "{name} works for {value}.",
        "The employer of {name} is {value}.",
        "{name} draws a salary from {value}.",
    ],
}

QUESTIONS: dict[str, str] = {
    "birth_year": "In which year was {name} born?",
    "birth_city": "In which city was {name} born?",
    "occupation": "What is the occupation of {name}?",
    "employer": "Which company employs {name}?",
}

# An order-sensitive fact: every paraphrase names the mentor first, so "B mentored A" is false and
# only word order tells the two apart (the positions stage's order probe). Neither name opens the
# text: a text's first word is tokenized without its leading space, so the two directions would
# differ in their tokens, not only in their order.
RELATION_TEMPLATES: list[str] = [
    "In those years {a} mentored {b}.",
    "For a long time {a} was the mentor of {b}.",
    "At the workshop {a} taught the trade to {b}.",
]

QUESTION_TOKEN = "<|question|>"
ANSWER_TOKEN = "<|answer|>"


def render_fact(attribute: str, variant: int, name: str, value: str) -> str:
    templates = BIO_TEMPLATES[attribute]
    return templates[variant % len(templates)].format(name=name, value=value)


def render_relation(variant: int, mentor: str, mentee: str) -> str:
    """
    >>> render_relation(0, "Ada Quill", "Bo Renk")
    'In those years Ada Quill mentored Bo Renk.'
    """
    return RELATION_TEMPLATES[variant % len(RELATION_TEMPLATES)].format(a=mentor, b=mentee)


def question(attribute: str, name: str) -> str:
    return QUESTIONS[attribute].format(name=name)


def qa_text(question_text: str, answer: str) -> str:
    """A QA line as it appears in the pretraining corpus (bos/eos are added by the tokenizer stage).

    The answer follows `<|answer|>` after a space, so its tokens are the same as where the value
    follows a word in a biography (" Veltmor", not "Veltmor").

    >>> qa_text("In which city was Ada Quill born?", "Veltmor")
    '<|question|>In which city was Ada Quill born?<|answer|> Veltmor'
    """
    return f"{QUESTION_TOKEN}{question_text}{ANSWER_TOKEN} {answer}"
