"""Data formats, prompt masking, packing and the errors that name file and line (no training)."""

from __future__ import annotations

import pytest

from zerowizard.runner import data
from zerowizard.runner.tinymodel import default_data_file, load_card, tiny_model_dir


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir(load_card()))


def test_shipped_sample_is_alpaca_with_200_examples():
    recs = data.load_records(default_data_file())
    assert len(recs) >= 200
    assert all(data.detect_format(r) == "alpaca" for r in recs)


def test_alpaca_chat_and_oasst1_become_the_same_messages(tmp_path):
    alpaca = {"instruction": "Say hi.", "input": "", "output": "hi"}
    chat = {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}]}
    oasst = {"text": "### Human: Say hi.### Assistant: hi"}
    out = [data.to_messages(data._record(r, "x")) for r in (alpaca, chat, oasst)]
    assert out[0] == out[1] == out[2]


def test_labels_cover_only_the_answer(tok):
    msgs = [{"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "2 plus 2 is 4."}]
    enc = data.encode(tok, msgs, 256)
    learnt = tok.decode([t for t in enc["labels"] if t != data.IGNORE])
    assert "2 plus 2 is 4." in learnt and "What is" not in learnt and "Human" not in learnt
    assert tok.eos_token in learnt


def test_multi_turn_masks_every_user_turn(tok):
    msgs = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "uno"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "dos"},
    ]
    learnt = tok.decode([t for t in data.encode(tok, msgs, 256)["labels"] if t != data.IGNORE])
    assert "uno" in learnt and "dos" in learnt and "one" not in learnt and "two" not in learnt


def test_packing_fills_sequences(tok):
    recs = data.load_records(default_data_file())[:40]
    packed = data.build_examples(tok, recs, 64, packing=True)
    assert all(len(e["input_ids"]) == 64 for e in packed[:-1])
    plain = data.build_examples(tok, recs, 64)
    assert sum(len(e["input_ids"]) for e in packed) == sum(len(e["input_ids"]) for e in plain)


@pytest.mark.parametrize(
    "content,needle",
    [
        ("", "empty"),
        ('[{"instruction": "a", "output": "b"},\n {"instruction": "c", "input": ""}]', "line 2"),
        ('{"instruction": "a", "output": "b"}\n{"oops": 1}\n', "line 2"),
        ('{"instruction": "a", "output": "b"}\n{not json\n', "line 2: not valid JSON"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', "no assistant message"),
        ('{"text": "no turns here"}\n', "no '### Assistant:' turn"),
    ],
)
def test_bad_data_is_named_by_file_and_line(tmp_path, content, needle):
    f = tmp_path / "d.jsonl"
    f.write_text(content)
    with pytest.raises(data.DataError) as err:
        for r in data.load_records(f):
            data.to_messages(r)
    assert str(f) in str(err.value) and needle in str(err.value)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(data.DataError, match="no such data file"):
        data.load_records(tmp_path / "nope.json")
