"""The outbox: signed bodies in an append-only journal, unsettled until the coordinator has
them, whatever the ids look like, whatever a crash or a full disk cuts short."""
import json
import resource
import signal

from node.daemon.outbox import Outbox, unsettled


def body(rid: str) -> dict:
    return {"requestId": rid, "result": f"text of {rid}", "poe": "0x00"}


def ids(bodies: list[dict]) -> list[str]:
    return [b["requestId"] for b in bodies]


def test_ids_that_look_alike_stay_apart_and_survive_a_new_process(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    alike = ["a/1", "a_1", "a:1", "req_A", "req_a", "x" * 199 + "1", "x" * 199 + "2",
             "ünï/../c", 'q"\n{"done": "a_1"}']
    outbox.put_many([body(rid) for rid in alike])
    assert outbox.depth() == len(alike)
    outbox.remove("a_1")
    outbox.remove("req_a")
    left = [rid for rid in alike if rid not in ("a_1", "req_a")]
    assert ids(unsettled(outbox.folder)) == left          # what a crash right now would leave
    assert ids(Outbox(outbox.folder).pending()) == left   # and what the next start sends


def test_a_body_put_again_replaces_the_first_and_a_removal_settles_it_for_good(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    outbox.put({**body("req_1"), "result": "first"})
    outbox.put(body("req_2"))
    outbox.put({**body("req_1"), "result": "second"})
    assert [(b["requestId"], b["result"]) for b in unsettled(outbox.folder)] == \
        [("req_2", "text of req_2"), ("req_1", "second")]
    outbox.remove("req_1")
    outbox.remove("req_1")  # twice is harmless
    assert ids(Outbox(outbox.folder).pending()) == ["req_2"]


def test_a_torn_last_line_is_dropped_and_unreadable_lines_are_set_aside(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    outbox.put(body("kept"))
    with open(outbox.journal, "ab") as f:  # a line from elsewhere, then a crash mid-write
        f.write(b'{"what": 1}\n{"put": {"requestId": "torn", "res')
    again = Outbox(outbox.folder)
    assert ids(again.pending()) == ["kept"]
    aside = list(again.rejected.glob("journal-unreadable-*.ndjson"))
    assert len(aside) == 1 and aside[0].read_bytes() == b'{"what": 1}\n'
    again.put(body("next"))  # the journal was rewritten: nothing torn stands before it
    assert ids(unsettled(outbox.folder)) == ["kept", "next"]


def test_rejected_bodies_are_kept_aside_one_file_each(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    outbox.put(body("bad"))
    kept = outbox.reject("bad")
    assert json.loads(kept.read_text())["requestId"] == "bad" and outbox.depth() == 0
    assert unsettled(outbox.folder) == []
    assert outbox.reject("never-written").parent == outbox.rejected  # logged, not raised
    assert kept.stat().st_mode & 0o777 == 0o600


def test_the_journal_and_its_folder_are_owner_only(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    outbox.put(body("r1"))
    assert (outbox.journal.stat().st_mode & 0o777, outbox.folder.stat().st_mode & 0o777) == \
        (0o600, 0o700)


def test_files_an_older_build_left_are_taken_in_and_unreadable_ones_set_aside(tmp_path):
    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / "req_1.json").write_text(json.dumps(body("req_1")))  # the oldest naming
    (folder / "req_2-0123abcd.json").write_text(json.dumps(body("req_2")))
    (folder / "torn.json").write_text("{not json")
    outbox = Outbox(folder)
    assert sorted(ids(outbox.pending())) == ["req_1", "req_2"]
    assert sorted(p.name for p in folder.glob("*.json")) == []  # the journal holds them now
    assert (outbox.rejected / "torn.json").exists()
    outbox.remove("req_1")
    assert ids(Outbox(folder).pending()) == ["req_2"]


def test_a_batch_of_changes_removes_first_and_shares_one_outcome(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    outbox.put({**body("req_1"), "result": "delivered earlier"})
    fresh = {**body("req_1"), "result": "served again"}
    assert outbox.apply([("put", fresh), ("remove", "req_1"), ("put", body("req_2"))]) == \
        [None, None, None]
    assert sorted((b["requestId"], b["result"]) for b in unsettled(outbox.folder)) == \
        [("req_1", "served again"), ("req_2", "text of req_2")]


def test_a_full_disk_fails_the_batch_and_leaves_no_torn_record(tmp_path):
    """RLIMIT_FSIZE makes the journal's write fail as a full disk would (EFBIG, possibly
    after part of it was written): the batch fails, the journal is cut back, and the next
    write follows a whole line."""
    outbox = Outbox(tmp_path / "outbox")
    outbox.put(body("before"))
    size = outbox.journal.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))
    try:
        outcomes = outbox.apply([("remove", "before"), ("put", body("too big " + "x" * 500))])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert [type(o) for o in outcomes] == [OSError, OSError]
    assert outbox.journal.stat().st_size == size and outbox.depth() == 1
    outbox.put(body("after"))
    assert ids(Outbox(outbox.folder).pending()) == ["before", "after"]


def test_the_journal_is_emptied_when_all_is_settled_and_compacted_when_it_grows(tmp_path):
    outbox = Outbox(tmp_path / "outbox", compact_at=4096)
    outbox.put(body("a"))
    outbox.remove("a")
    assert outbox.journal.stat().st_size == 0
    outbox.put(body("stays"))
    for i in range(100):
        outbox.put(body(f"r{i}"))
        outbox.remove(f"r{i}")
        assert outbox.journal.stat().st_size <= 4096 + 200  # rewritten once past the mark
    assert ids(unsettled(outbox.folder)) == ["stays"]

