from __future__ import annotations

from tidings.core.cursor import DELIVER, DROP, GAP, HOLD, StreamCursor


def test_live_only_cursor_takes_its_baseline_from_the_first_frame() -> None:
    c = StreamCursor()
    assert c.offer(41, b"41") == DELIVER
    assert c.offer(42, b"42") == DELIVER
    assert c.offer(42, b"42") == DROP
    assert c.offer(40, b"40") == DROP
    assert c.last == 42


def test_gap_holds_the_early_frame_until_the_missing_one_is_synced() -> None:
    c = StreamCursor(5)
    assert c.offer(7, b"7") == GAP
    assert c.syncing
    assert c.offer(8, b"8") == HOLD
    c.delivered(6)  # read from the store
    frames, more = c.drain_held()
    assert frames == [b"7", b"8"]
    assert not more and not c.syncing and c.last == 8
    assert c.offer(9, b"9") == DELIVER


def test_replay_boundary_has_no_gap_and_no_duplicate() -> None:
    c = StreamCursor(10, syncing=True)
    for seq in (12, 13, 11):  # live frames arriving while the store is read
        assert c.offer(seq, str(seq).encode()) == HOLD
    for seq in (11, 12):  # the store snapshot had 11 and 12
        c.delivered(seq)
    c.skip_to(12)
    frames, more = c.drain_held()
    assert frames == [b"13"]
    assert not more and c.last == 13


def test_holes_in_the_store_are_skipped_not_waited_for() -> None:
    c = StreamCursor(0, syncing=True)
    c.delivered(2)
    c.skip_to(5)  # head 5, seqs 1 and 3..5 deleted
    assert c.last == 5
    assert c.drain_held() == ([], False)


def test_a_gap_that_remains_asks_for_more_sync() -> None:
    c = StreamCursor(1, syncing=True)
    c.offer(5, b"5")
    c.skip_to(3)
    frames, more = c.drain_held()
    assert frames == [] and more and c.syncing


def test_overflow_drops_held_frames_and_asks_to_reread() -> None:
    from tidings.core import cursor as module

    c = StreamCursor(0, syncing=True)
    for seq in range(1, module.MAX_HELD + 2):
        c.offer(seq, b"x")
    assert len(c.held) < module.MAX_HELD
    _, more = c.drain_held()
    assert more
