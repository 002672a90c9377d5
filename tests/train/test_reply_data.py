"""Reply training examples: the agent's own prompt and a reply its grounding check accepts, built from
real ReDial language where it fits."""

from __future__ import annotations

import re
from pathlib import Path

from agent.assemble import Agent
from prompts.loader import load_prompt
from train.reply_data import _clean_sentence, natural_title, redial_dialogues, redial_to_catalog, reply_examples


def test_redial_sentences_keep_only_taste() -> None:
    assert _clean_sentence("have you seen @123") == "Have you seen {L}?"
    assert _clean_sentence("@123 is a great comedy movie.") == "{L} is a great comedy movie."
    assert _clean_sentence("@123 with Bruce Willis is really funny") is None  # a person
    assert _clean_sentence("The new @123 just came out in theaters") is None  # recency we cannot check
    assert _clean_sentence("@123 or @456?") is None  # two movies
    assert natural_title("Matrix, The (1999)") == "The Matrix"


def test_examples_pass_the_agents_own_grounding(small_agent: Agent, data_dir: Path) -> None:
    dialogues = data_dir / "redial" / "train_data_sample500.jsonl"
    mapping = redial_to_catalog(small_agent, redial_dialogues(dialogues))
    assert len(mapping) >= 100  # ReDial's popular movies are in the 300 most-rated MovieLens ones
    examples = reply_examples(small_agent, load_prompt("reply", 2), dialogues, 24, seed=0)
    assert len(examples) == 24
    assert {e.source for e in examples} == {"redial-request", "user-history"}
    for e in examples:
        labels = re.findall(r"^\[([A-T])\] ", e.prompt, flags=re.MULTILINE)
        cited = re.findall(r"\[([A-T])\]", e.target)
        assert e.target.startswith(" ") and e.prompt.endswith("Reply:")
        assert cited == labels  # one sentence per item, in order
        assert len(re.split(r"(?<=[.!?])\s+", e.target.strip())) == len(labels)
    assert len({e.target for e in examples}) >= 0.75 * len(examples)  # varied, short ones may repeat
    for word in ("classic", "strong", "favourite", "natural next step", "worth a look"):  # no empty or false frames
        assert not any(word in e.target for e in examples), word
