"""Intent training examples: every phrase a draft holds is written in its message and grounds in the catalog,
ReDial seekers' messages keep only what their annotations cover, and no evaluation case's message is used."""

from __future__ import annotations

import json
import random
from pathlib import Path

from scripted_llm import ScriptedLLM

from agent.assemble import Agent
from agent.intent import ReadContext, RulesReader
from agent.intent_llm import IntentDraft, LLMReader
from prompts.loader import load_prompt
from train.intent_data import MessageMaker, evaluation_messages, intent_examples, leaks, redial_messages


def _rules(agent: Agent) -> RulesReader:
    reader = agent.conversations.reader
    assert isinstance(reader, RulesReader)
    return reader


def test_generated_drafts_are_written_in_their_messages_and_ground(small_agent: Agent) -> None:
    rules = _rules(small_agent)
    maker = MessageMaker(small_agent, rules, ["atmospheric", "twist ending"], random.Random(0))
    grounding = LLMReader(ScriptedLLM([]), rules)
    for _ in range(60):
        message, draft, shown = maker.message()
        lowered = message.lower()
        phrases = draft.liked + draft.disliked + draft.seen + draft.want + draft.either + draft.avoid
        assert all(p.lower() in lowered for p in phrases), (message, draft)
        assert all(p.startswith("#") or p.lower() in lowered for p in draft.like), (message, draft)
        intent = grounding.ground(message, draft, ReadContext(shown_before=tuple(shown)))
        assert not [d for d in intent.dropped if d.startswith("value:")], (message, intent.dropped)
        if draft.years and not any(w in draft.years for w in ("recent", "newer", "older")):
            assert intent.year_min is not None or intent.year_max is not None, (message, draft.years)


def test_redial_messages_keep_only_what_the_annotation_covers(small_agent: Agent, tmp_path: Path) -> None:
    dialogue = {"initiatorWorkerId": 1, "respondentWorkerId": 2,
                "movieMentions": {"111": "Toy Story (1995)", "222": "Jumanji (1995)"},
                "initiatorQuestions": {"111": {"liked": 1, "seen": 1, "suggested": 0},
                                       "222": {"liked": 0, "seen": 1, "suggested": 0}},
                "messages": [{"senderWorkerId": 1, "text": "I loved @111"},
                             {"senderWorkerId": 1, "text": "any comedies like @111 ?"},
                             {"senderWorkerId": 1, "text": "something from the 90s like @111"},
                             {"senderWorkerId": 2, "text": "Have you seen @222 ?"},
                             {"senderWorkerId": 1, "text": "I saw @222 , meh"}]}
    path = tmp_path / "dialogues.jsonl"
    path.write_text(json.dumps(dialogue) + "\n", encoding="utf-8")
    out = redial_messages(small_agent, path)
    assert [text for text, _ in out] == ["I loved Toy Story", "I saw Jumanji , meh"]
    assert out[0][1] == IntentDraft(liked=["Toy Story"]) and out[1][1] == IntentDraft(disliked=["Jumanji"])


def test_no_evaluation_message_is_trained_on(small_agent: Agent, data_dir: Path) -> None:
    evaluation = evaluation_messages()
    assert len(evaluation) >= 300
    long = next(m for m in evaluation if len(m.split()) >= 4)
    assert leaks(evaluation[0], evaluation) and leaks(f"hi! {long} thanks", evaluation)
    dialogues = data_dir / "redial" / "train_data_sample500.jsonl"
    examples = intent_examples(small_agent, load_prompt("intent"), 80, dialogues, data_dir, seed=0)
    assert len(examples) == 80 and {e.source for e in examples} == {"generated", "redial"}
    for example in examples:
        message = example.prompt.rsplit("Message: ", 1)[1].removesuffix("\nJSON:")
        assert not leaks(message, evaluation), message
        assert IntentDraft.model_validate_json(example.target)  # the target the model learns is a valid draft
