"""The outbox keeps one file per request id, whatever the ids look like."""
import json
import shutil

from node.daemon.outbox import Outbox


def body(rid: str) -> dict:
    return {"requestId": rid, "result": f"text of {rid}", "poe": "0x00"}


def test_ids_that_look_alike_never_share_a_file(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    ids = ["a/1", "a_1", "a:1", "req_A", "req_a", "x" * 199 + "1", "x" * 199 + "2", "ünï/../c"]
    for rid in ids:
        outbox.put(body(rid))
    assert outbox.depth() == len(ids)
    outbox.remove("a_1")
    outbox.remove("req_a")
    left = {b["requestId"] for b in outbox.pending()}
    assert left == set(ids) - {"a_1", "req_a"}
    assert all(p.parent == outbox.folder for p in outbox.folder.glob("*.json"))


def test_rejected_bodies_are_kept_aside_and_unreadable_files_too(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    outbox.put(body("bad"))
    kept = outbox.reject("bad")
    assert json.loads(kept.read_text())["requestId"] == "bad" and outbox.depth() == 0
    assert outbox.reject("never-written").parent == outbox.rejected  # logged, not raised
    (outbox.folder / "torn.json").write_text("{not json")
    assert outbox.pending() == [] and (outbox.rejected / "torn.json").exists()


def test_files_are_owner_only(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    path = outbox.put(body("r1"))
    assert (path.stat().st_mode & 0o777, outbox.folder.stat().st_mode & 0o777) == (0o600, 0o700)


def test_a_file_named_by_an_older_scheme_is_renamed_so_it_can_be_removed(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    (outbox.folder / "req_1.json").write_text(json.dumps(body("req_1")))
    assert [b["requestId"] for b in outbox.pending()] == ["req_1"]
    outbox.remove("req_1")
    assert outbox.depth() == 0


def test_a_group_commit_writes_one_durable_file_per_body(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    paths = outbox.put_many([body(f"req_{i}") for i in range(5)])
    assert [json.loads(p.read_text())["requestId"] for p in paths] == [f"req_{i}" for i in range(5)]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in paths)
    assert sorted(b["requestId"] for b in outbox.pending()) == [f"req_{i}" for i in range(5)]
    assert not list(outbox.folder.glob(".*.tmp"))


def test_a_body_put_again_for_the_same_id_replaces_the_first_whole(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    first = outbox.put({**body("req_1"), "result": "first"})
    again = outbox.put({**body("req_1"), "result": "second"})
    assert first == again and json.loads(again.read_text())["result"] == "second"
    assert [b["result"] for b in outbox.pending()] == ["second"]
    assert not list(outbox.folder.glob(".*.tmp"))


def test_a_batch_of_changes_removes_first_and_reports_each_outcome(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    outbox.put({**body("req_1"), "result": "delivered earlier"})
    fresh = {**body("req_1"), "result": "served again"}
    assert outbox.apply([("put", fresh), ("remove", "req_1"), ("put", body("req_2"))]) == \
        [None, None, None]
    assert sorted((b["requestId"], b["result"]) for b in outbox.pending()) == \
        [("req_1", "served again"), ("req_2", "text of req_2")]
    shutil.rmtree(outbox.folder)  # the disk is gone from under it: puts fail, removes do not
    outcomes = outbox.apply([("remove", "req_1"), ("put", body("req_3"))])
    assert outcomes[0] is None and isinstance(outcomes[1], FileNotFoundError)
