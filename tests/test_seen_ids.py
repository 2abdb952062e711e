"""The run's taken ids (SeenIds): the first copy of an id wins, within a batch and across batches."""

from __future__ import annotations

import pytest

from service.sync.seen_ids import SeenIds

# Ids as feeds send them: JSON must escape some, SQLite must keep them as text, never as numbers.
ODD_IDS = ['a"b', "back\\slash", "007", "1e3", "Ünïcødé", "😀", "tab\there", " spaced ", "42"]


@pytest.fixture
async def seen() -> SeenIds:
    return SeenIds()


async def test_a_batch_of_new_ids_takes_them_all_and_a_later_batch_finds_them(seen: SeenIds) -> None:
    assert (
        await seen.first_positions([(external_id, position) for position, external_id in enumerate(ODD_IDS)])
        == {}
    )
    later = [(external_id, 100 + position) for position, external_id in enumerate(reversed(ODD_IDS))]
    expected = {100 + position: len(ODD_IDS) - 1 - position for position in range(len(ODD_IDS))}
    assert await seen.first_positions(later) == expected
    await seen.close()


async def test_the_first_copy_in_a_batch_wins_and_only_the_later_copies_are_reported(seen: SeenIds) -> None:
    batch = [("x", 0), ("y", 1), ("x", 2), ("z", 3), ("y", 4), ("x", 5)]
    assert await seen.first_positions(batch) == {2: 0, 4: 1, 5: 0}
    assert await seen.first_positions([("z", 6), ("w", 7)]) == {6: 3}
    await seen.close()


async def test_ids_at_positions_with_gaps_between_them_are_taken_as_consecutive_ones_are(
    seen: SeenIds,
) -> None:
    # Gaps are where a batch had item errors: such a batch takes its ids by another statement.
    assert await seen.first_positions([("x", 0), ("y", 2), ("x", 3), ("z", 7), ("y", 8)]) == {3: 0, 8: 2}
    assert await seen.first_positions([("z", 9), ("w", 11)]) == {9: 7}
    assert await seen.first_positions([("w", 12), ("v", 13), ("x", 14)]) == {12: 11, 14: 0}
    await seen.close()


async def test_a_released_id_is_taken_by_the_next_item_that_has_it(seen: SeenIds) -> None:
    assert await seen.first_positions([("x", 0), ("y", 1)]) == {}
    await seen.release([("x", 0)])
    assert await seen.first_positions([("x", 5), ("x", 6), ("y", 7)]) == {6: 5, 7: 1}
    await seen.close()


async def test_listed_and_seen_ids_are_not_missing(seen: SeenIds) -> None:
    assert (
        await seen.first_positions([(external_id, position) for position, external_id in enumerate(ODD_IDS)])
        == {}
    )
    await seen.list_errors(["errored"])
    catalog = sorted([*ODD_IDS, "errored", "gone", "gone too"])
    assert await seen.note_missing(catalog) == 2
    assert await seen.missing("", 10) == ["gone", "gone too"]
    await seen.close()
