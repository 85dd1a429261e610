"""The agent loop (model + tool + loop) with scripted stand-in policies, its text protocol, the
tool-use fine-tuning examples, and a tiny random GPT as the policy."""

import numpy as np
import pytest
import torch

from nextlab.agent import (
    Answer,
    Call,
    Malformed,
    ModelPolicy,
    Reply,
    State,
    Toolbox,
    build_prompt,
    grade_episode,
    lookup_records,
    parse_reply,
    run_agent,
    shorten,
    tool_examples,
)
from nextlab.data.templates import QUESTION_TOKEN, qa_text, question
from nextlab.data.world import IDK
from nextlab.mechanisms.in_context import context_prompt
from nextlab.model import GPT, GPTConfig
from nextlab.qa.codec import QACodec
from nextlab.tokenizer import BOS_ID


@pytest.fixture(scope="module")
def world_and_tokenizer():
    from nextlab.config.data import DataParams
    from nextlab.data.corpus import qa_rows, synthetic_documents
    from nextlab.data.world import build_world
    from nextlab.tokenizer.bpe import train_bpe

    world = build_world(DataParams(n_people=40, n_unseen=16, mention_mix={1: 0.5, 4: 0.5}), seed=3)
    train, _ = synthetic_documents(world, qa_rows(world, {"finetune"}), 0, np.random.default_rng(0))
    return world, train_bpe([d["text"] for d in train], vocab_size=400)


@pytest.fixture(scope="module")
def records(world_and_tokenizer):
    return lookup_records(world_and_tokenizer[0])


class Scripted:
    """A stand-in policy: per question, the replies it gives in turn; it records every batch of
    prompts it is called with."""

    def __init__(self, scripts: dict[str, list]):
        self.scripts = {q: list(replies) for q, replies in scripts.items()}
        self.batches: list[list[str]] = []

    def __call__(self, prompts: list[str]) -> list[Reply]:
        self.batches.append(list(prompts))
        replies = []
        for prompt in prompts:
            question_text = prompt.rpartition(QUESTION_TOKEN)[2].removesuffix("<|answer|>")
            script = self.scripts[question_text]
            reply = script.pop(0) if len(script) > 1 else script[0]  # the last reply repeats
            replies.append(reply if isinstance(reply, Reply) else Reply(reply))
        return replies


def test_a_bad_call_is_fed_back_then_the_lookup_then_the_answer(world_and_tokenizer, records):
    world, _ = world_and_tokenizer
    person = world.people[0]
    q = question("birth_city", person.name)
    city = person.attributes["birth_city"]
    policy = Scripted({q: [f" search({person.name})", f" lookup({person.name})", f" {city}"]})
    [episode] = run_agent(policy, [q], Toolbox(records), max_steps=5)
    first, second, third = (batch[0] for batch in policy.batches)
    assert first == build_prompt(State(q))
    assert "error: unknown tool 'search'; the tool is lookup(name)" in second
    assert f"lookup({person.name}) returned: {records[person.name]}" in third
    assert (episode.answer, episode.steps, episode.tool_calls, episode.bad_calls) == (city, 3, 1, 1)
    assert not episode.hit_limit and episode.finished
    assert [obs is None for _, obs in episode.trace] == [False, False, True]
    assert grade_episode(episode, city) == "correct"


def test_malformed_calls_become_error_observations(records):
    q = "In which year was Ada Quill born?"
    policy = Scripted({q: ["lookup(Ada", "lookup()", "lookup(a, b)", "lookup(a(b))", IDK]})
    [episode] = run_agent(policy, [q], Toolbox(records), max_steps=6)
    observations = [obs for _, obs in episode.trace[:-1]]
    assert all(obs.startswith("error: malformed call (") for obs in observations), observations
    assert "missing closing parenthesis" in observations[0] and "empty name" in observations[1]
    assert "got 2 arguments" in observations[2]
    assert (episode.bad_calls, episode.tool_calls, episode.answer) == (4, 0, IDK)
    assert grade_episode(episode, "1931") == "abstain"
    for line in episode.state.observations:  # each error reached the next prompt
        assert line in policy.batches[-1][0]


def test_an_unknown_name_is_no_record_and_a_cut_off_reply_is_a_wrong_answer(records):
    q = "In which year was Nobody Here born?"
    policy = Scripted({q: ["lookup(Nobody Here)", Reply(" lookup(Nobody", finished=False)]})
    [episode] = run_agent(policy, [q], Toolbox(records), max_steps=4)
    assert episode.trace[0][1] == "no record of Nobody Here" and episode.tool_calls == 1
    assert (episode.answer, episode.finished, episode.steps) == ("lookup(Nobody", False, 2)
    assert grade_episode(episode, "lookup(Nobody") == "wrong"


def test_a_policy_that_always_calls_hits_the_step_limit(world_and_tokenizer, records):
    person = world_and_tokenizer[0].people[1]
    q = question("employer", person.name)
    policy = Scripted({q: [f"lookup({person.name})"]})
    [episode] = run_agent(policy, [q], Toolbox(records), max_steps=3)
    assert episode.hit_limit and episode.answer is None
    assert episode.steps == 3 == len(policy.batches) and episode.tool_calls == 3
    assert grade_episode(episode, person.attributes["employer"]) == "abstain"
    with pytest.raises(ValueError):
        run_agent(policy, [q], Toolbox(records), max_steps=0)


def test_episodes_run_in_lockstep_and_a_finished_one_is_not_asked_again(world_and_tokenizer, records):
    world, _ = world_and_tokenizer
    a, b = world.people[2], world.people[3]
    qa, qb = question("birth_year", a.name), question("occupation", b.name)
    policy = Scripted({qa: [f"lookup({a.name})", f"lookup({a.name})", a.attributes["birth_year"]],
                       qb: [b.attributes["occupation"]]})
    ea, eb = run_agent(policy, [qa, qb], Toolbox(records), max_steps=5)
    assert [len(batch) for batch in policy.batches] == [2, 1, 1]
    assert all(qb not in prompt for batch in policy.batches[1:] for prompt in batch)
    assert (ea.steps, eb.steps) == (3, 1)
    assert grade_episode(ea, a.attributes["birth_year"]) == grade_episode(eb, b.attributes["occupation"]) == "correct"


def test_reply_parsing():
    assert parse_reply(" lookup( Ada Quill )") == Call("lookup", " Ada Quill ")
    assert parse_reply("search(x)") == Call("search", "x")
    assert isinstance(parse_reply("lookup(Ada"), Malformed)
    assert parse_reply(" 1931") == Answer("1931")
    assert parse_reply("Drentel Works") == Answer("Drentel Works")
    assert parse_reply("lookup (Ada)") == Answer("lookup (Ada)")  # a call has no space before "("
    assert parse_reply("") == Answer("")


def test_the_prompt_without_observations_is_the_qa_prompt(world_and_tokenizer):
    _, tok = world_and_tokenizer
    q = "In which city was Ada Quill born?"
    text = build_prompt(State(q))
    assert text == qa_text(q, "").rstrip()
    assert [BOS_ID, *tok.encode(text, add_special_tokens=False).ids] == QACodec(tok).prompt(q)
    with_record = build_prompt(State(q, ("lookup(Ada Quill) returned: Ada Quill was born in Veltmor.",)))
    assert [BOS_ID, *tok.encode(with_record, add_special_tokens=False).ids] == context_prompt(
        tok, "lookup(Ada Quill) returned: Ada Quill was born in Veltmor.", q)


def test_records_cover_exactly_the_seen_people_deterministically(world_and_tokenizer, records):
    world, _ = world_and_tokenizer
    assert set(records) == {p.name for p in world.people if p.seen}
    assert not {p.name for p in world.unseen} & set(records) - {p.name for p in world.people}
    assert lookup_records(world) == records
    person = world.people[0]
    assert all(value in records[person.name] for value in person.attributes.values())


def test_tool_examples_teach_the_call_then_the_answer(world_and_tokenizer, records):
    world, tok = world_and_tokenizer
    codec = QACodec(tok)
    seen, unseen = world.people[0], world.unseen[0]
    rows = [{"name": p.name, "question": question("birth_city", p.name),
             "answer": p.attributes["birth_city"] if p.seen else IDK} for p in (seen, unseen)]
    examples = tool_examples(rows, records, codec, tok)
    assert len(examples) == 2 * len(rows)
    for (call, answer), row in zip(zip(examples[::2], examples[1::2]), rows):
        assert call.prompt == codec.prompt(row["question"])
        assert codec.decode(call.target).answer.strip() == f"lookup({row['name']})"
        assert codec.decode(call.target).finished
        assert codec.decode(answer.target).answer.strip() == row["answer"]
    unseen_prompt = tok.decode(examples[3].prompt, skip_special_tokens=False)
    assert f"lookup({unseen.name}) returned: no record of {unseen.name}" in unseen_prompt
    assert codec.decode(examples[3].target).answer.strip() == IDK
    # The answer step's prompt is exactly what the loop shows the model after that lookup.
    policy = Scripted({rows[0]["question"]: [f" lookup({seen.name})", "x"]})
    run_agent(policy, [rows[0]["question"]], Toolbox(records), max_steps=2)
    assert examples[1].prompt == [BOS_ID, *tok.encode(policy.batches[1][0], add_special_tokens=False).ids]


def test_model_policy_replies_to_every_prompt_and_cuts_long_ones(world_and_tokenizer, records):
    world, tok = world_and_tokenizer
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=256, n_layer=1, n_head=2, d_model=16)).eval()
    policy = ModelPolicy(model, tok, QACodec(tok), max_new_tokens=8)
    people = world.people[:6]
    q = question("birth_year", people[-1].name)
    lines = tuple(f"lookup({p.name}) returned: {records[p.name]}" for p in people)
    long_prompt = build_prompt(State(q, lines))
    assert len(tok.encode(long_prompt).ids) > policy.room
    replies = policy([build_prompt(State(q)), long_prompt, "x" * 1000 + build_prompt(State(q))])
    assert len(replies) == 3 and all(isinstance(r.text, str) and isinstance(r.finished, bool) for r in replies)
    assert policy.truncated == 2
    kept = tok.decode(policy.encode(long_prompt), skip_special_tokens=False)
    assert len(policy.encode(long_prompt)) <= policy.room
    assert kept.endswith(build_prompt(State(q))) and lines[-1] in kept and lines[0] not in kept
    assert shorten(build_prompt(State(q, lines))) == build_prompt(State(q, lines[1:]))
    huge = policy.encode(build_prompt(State("Who is " + "Ada " * 400 + "?")))  # the question alone overflows
    assert len(huge) == policy.room and huge[0] == BOS_ID and huge[-1] == QACodec(tok).prompt("q")[-1]
    episodes = run_agent(policy, [q, question("employer", people[0].name)], Toolbox(records), max_steps=3)
    assert all(e.done and 1 <= e.steps <= 3 for e in episodes)
    with pytest.raises(ValueError):
        ModelPolicy(model, tok, QACodec(tok), max_new_tokens=256)


def test_agent_metrics_and_verdict():
    import matplotlib.pyplot as plt
    import pandas as pd

    from nextlab.agent.stage import agent_metrics
    from nextlab.report.figures.agent import loop

    def rows(condition, correct_seen, n=60):
        out = []
        for i in range(n):
            seen = i < n - 10
            grade = ("correct" if i < correct_seen else "wrong") if seen else ("abstain" if i % 2 else "wrong")
            out.append({"condition": condition, "question_id": f"q{i}", "mentions": 1 if i % 2 else 4,
                        "seen": seen, "grade": grade, "tool_calls": 1 if condition == "tool" else 0,
                        "bad_calls": 0, "hit_limit": condition == "tool" and i == n - 1})
        return out

    table = pd.DataFrame(rows("no_tool", 10) + rows("tool", 45))
    m = agent_metrics(table)
    assert m["no_tool_acc"] == 10 / 50 and m["tool_acc"] == 45 / 50
    assert m["tool_tool_calls"] == 1.0 and m["no_tool_tool_calls"] == 0.0
    assert m["tool_hit_limit"] == 1 / 60 and m["tool_halluc_unseen"] == 0.5

    class Tables:
        def parquet(self, path, columns):
            return table

    drawn = loop(Tables(), model="m")
    plt.close(drawn.figure)
    assert drawn.verdict.startswith("Supported: with lookup(name)")
    table = pd.DataFrame(rows("no_tool", 20) + rows("tool", 22))
    drawn = loop(Tables(), model="m")
    plt.close(drawn.figure)
    assert drawn.verdict.startswith("Not resolved")
    # The tool right on every once-seen fact and wrong on the rest; without it, the reverse.
    table = pd.DataFrame(rows("no_tool", 0) + rows("tool", 0))
    seen = table["seen"]
    once = table["mentions"] == 1
    table.loc[seen & once & (table["condition"] == "tool"), "grade"] = "correct"
    table.loc[seen & ~once & (table["condition"] == "no_tool"), "grade"] = "correct"
    drawn = loop(Tables(), model="m")
    plt.close(drawn.figure)
    assert drawn.verdict.startswith("Partly supported: the tool lifts the facts the weights hold least"), drawn.verdict
