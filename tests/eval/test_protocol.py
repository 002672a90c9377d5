"""LlamaRec's leave-one-out protocol on ml-latest-small: counts, order and no leakage."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.protocols import Split, leave_one_out
from index.loaders import load_dataset


@pytest.fixture(scope="module")
def split(data_dir: Path) -> Split:
    return leave_one_out(load_dataset("ml-latest-small", data_dir))


def test_five_core_counts(split: Split) -> None:
    assert split.counts == {"users": 610, "items": 3650, "interactions": 90274}
    assert len(split.train.items) == 3650
    assert len(split.train.interactions) == 90274 - 2 * 610


def test_targets_are_the_last_two_items_in_time(split: Split) -> None:
    for val, test in zip(split.validation, split.test, strict=True):
        assert val.user == test.user
        assert test.history == [*val.history, val.target]
        assert test.timestamps[-1] >= val.timestamps[-1] if val.timestamps else True
        assert val.timestamps == sorted(val.timestamps)


def test_training_part_holds_no_target(split: Split) -> None:
    train = split.train.interactions
    by_user = train.groupby("user")["item"].apply(list).to_dict()
    for val, test in zip(split.validation, split.test, strict=True):
        assert by_user[val.user] == val.history  # exactly the history before the validation target
        # a target can only be in training if the user interacted with it earlier too (not in ML)
        assert val.target not in by_user[val.user] and test.target not in by_user[val.user]


def test_candidates20_lists(data_dir: Path) -> None:
    from eval.protocols import candidates20

    dataset = load_dataset("ml-latest-small", data_dir)
    first, second = candidates20(dataset), candidates20(dataset)
    assert first.counts["users"] == 610
    positions = []
    for case, again in zip(first.test, second.test, strict=True):
        assert case.candidates == again.candidates  # fixed seed: every ranker sees the same lists
        assert case.candidates is not None and len(set(case.candidates)) == 20
        assert case.target in case.candidates and not set(case.history) & set(case.candidates)
        positions.append(case.candidates.index(case.target))
    assert 7 < sum(positions) / len(positions) < 12  # shuffled: the target is not always first


def test_candidates20_leaves_out_users_with_too_few_unseen_items(small_data_dir: Path) -> None:
    """movies-small has 300 movies, and some users rated almost all of them: they cannot get 19 unseen
    negatives. They are left out and counted (sampling for them used to loop forever); ml-latest-small above
    leaves nobody out and its counts keep their keys."""
    from eval.protocols import candidates20, leave_one_out

    dataset = load_dataset("movies-small", small_data_dir)
    split, base = candidates20(dataset), leave_one_out(dataset)
    items = set(split.train.items)
    short = [c for c in base.test if len(items - set(c.history) - {c.target}) < 19]
    assert short and split.counts["test_users_left_out"] == len(short) == len(base.test) - len(split.test)
    assert split.counts["validation_users_left_out"] == len(base.validation) - len(split.validation)
    assert all(c.candidates is not None and len(set(c.candidates)) == 20 for c in split.test + split.validation)
