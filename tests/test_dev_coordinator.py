"""scripts/dev_coordinator.py as a real process over loopback, driven like a node would drive it."""
import hashlib
import json
import re
import threading
import time

import pytest
import requests

from node.identity import Signer, new_secret, node_key_hash
from tests.coord import ROOT, FakeNode, admin, now_ms, sample_manifest, start_dev_coordinator, stats, wait_for

from scripts import protocol_verify as pv

NODE = 7


@pytest.fixture
def signer() -> Signer:
    return Signer(new_secret())


@pytest.fixture
def other() -> Signer:
    return Signer(new_secret())


def error_of(r: requests.Response) -> str:
    """The PROTOCOL.md error body: exactly {error, detail}; returns the code."""
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body["error"]


def dispatched(node: FakeNode) -> dict:
    r = node.poll()
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["request"]


# --- verification helpers are independent of the node's signer, and agree with eth-account ------

def test_protocol_verify_agrees_with_eth_account_and_node(signer):
    from eth_account import Account
    from eth_account.messages import encode_defunct

    text = "parallelix-node:result:req_0001 ünïcode"
    sig = signer.sign(text)
    assert pv.recover_address(text, sig) == signer.address
    assert Account.recover_message(encode_defunct(text=text), signature=sig) == signer.address
    assert pv.key_hash_of_address(signer.address) == node_key_hash(signer.address)
    assert pv.recover_address(text + "x", sig) != signer.address
    with pytest.raises(pv.SignatureFormatError):
        pv.recover_address(text, sig[:-2] + "1d")          # v = 29
    assert pv.find_float({"a": [1, {"b": 0.5}]}) == "manifest.a[1].b"
    assert pv.find_float({"a": [1, True, None, "1.5"]}) is None


# --- /network, base path, wrapper -----------------------------------------------------------------

def test_network_at_root_and_under_base_path(signer):
    with start_dev_coordinator("--base-path", "/api", "--node", f"{NODE}={signer.address}") as (proc, url):
        root, based = requests.get(f"{url}/network"), requests.get(f"{url}/api/network")
        assert root.status_code == based.status_code == 200
        assert root.json() == based.json()
        body = root.json()
        assert body["chainId"] == 8453 and isinstance(body["version"], str)
        assert set(body["contracts"]) == {"NodeRegistryLocker", "OperatorStakeRewardsV2"}
        assert all(re.fullmatch(r"0x[0-9a-fA-F]{40}", a) for a in body["contracts"].values())
        assert FakeNode(f"{url}/api", NODE, signer).attach().status_code == 200
        missing = requests.get(f"{url}/nope")
        assert missing.status_code == 404 and error_of(missing) == "not_found"


def test_wrapper_script_starts_the_coordinator():
    wrapper = ROOT / "scripts" / "dev-coordinator"
    with start_dev_coordinator(command=[str(wrapper)]) as (proc, url):
        assert requests.get(f"{url}/network").json()["chainId"] == 8453
    assert proc.returncode == 0
    assert "dev-coordinator summary" in proc.summary


# --- attach -----------------------------------------------------------------------------------------

def test_attach_ok_with_configured_intervals_and_key_hash_registration(signer):
    key_hash = node_key_hash(signer.address)
    with start_dev_coordinator("--node", f"{NODE}={key_hash}", "--heartbeat-ms", "1234",
                               "--poll-ms", "250") as (proc, url):
        node = FakeNode(url, NODE, signer)
        manifest = sample_manifest(tier=3)
        r = node.attach(manifest=manifest)
        assert r.status_code == 200, r.text
        assert r.json() == {"state": "active", "tier": 3, "heartbeatIntervalMs": 1234, "pollIntervalMs": 250}
        s = stats(url)
        assert [a["manifestHash"] for a in s["attaches"]] == [node.manifest_hash(manifest)]
        assert s["nodes"][str(NODE)] == {"nodeKeyHash": key_hash, "address": signer.address, "tier": 3,
                                         "attaches": 1, "lastSeq": 0}
    assert re.search(rf"attach from node {NODE}: timestamp ok .*, manifest ok, signature ok -> 200", proc.log)


def test_attach_without_ollama_is_accepted(signer):
    """PROTOCOL.md: a node whose Ollama does not answer attaches with version null, no models."""
    with start_dev_coordinator("--node", f"{NODE}={signer.address}") as (_, url):
        node = FakeNode(url, NODE, signer)
        manifest = {**sample_manifest(), "models": [], "ollama": {"version": None}}
        r = node.attach(manifest=manifest)
        assert r.status_code == 200, r.text
        assert stats(url)["attaches"][0]["manifest"]["ollama"] == {"version": None}


def test_attach_rejections(signer, other):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}") as (proc, url):
        node = FakeNode(url, NODE, signer)
        post = lambda body: requests.post(f"{url}/operator/attach", json=body, timeout=10)  # noqa: E731

        # a valid signature by a key that is not the registered one, claiming that key's address
        impostor = FakeNode(url, NODE, other).attach()
        assert impostor.status_code == 403 and error_of(impostor) == "key_mismatch"

        # the registered address, but signed by another key: the signature does not match the message
        body = node.attach_body()
        body["signature"] = FakeNode(url, NODE, other).attach_body(timestamp=body["timestamp"])["signature"]
        r = post(body)
        assert r.status_code == 400 and error_of(r) == "bad_signature"

        for garbled in ("0x1234", node.attach_body()["signature"][:-2] + "1d", 17):
            body = node.attach_body()
            body["signature"] = garbled
            r = post(body)
            assert r.status_code == 400 and error_of(r) == ("bad_request" if garbled == 17 else "bad_signature")

        unknown = FakeNode(url, 99, signer).attach()
        assert unknown.status_code == 404 and error_of(unknown) == "unknown_node"

        for skew in (-61_000, 61_000):
            r = node.attach(timestamp=now_ms() + skew)
            assert r.status_code == 400 and error_of(r) == "bad_request" and "timestamp" in r.json()["detail"]

        # the manifest hash is over canonical JSON with non-ASCII unescaped: an escaped one fails
        manifest = sample_manifest()
        body = node.attach_body(manifest=manifest)
        escaped = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
        wrong = "0x" + hashlib.sha256(escaped.encode()).hexdigest()
        body["signature"] = signer.sign(f"parallelix-node:attach:{NODE}:{body['timestamp']}:{wrong}")
        r = post(body)
        assert r.status_code == 400 and error_of(r) == "bad_signature"

        floaty = sample_manifest()
        floaty["ramMiB"] = 32000.0
        r = node.attach(manifest=floaty)
        assert r.status_code == 400 and error_of(r) == "bad_request" and "manifest.ramMiB" in r.json()["detail"]

        for field, value in (("nodeId", "7"), ("nodeId", True), ("address", signer.address.lower()),
                             ("timestamp", 1.5), ("manifest", [])):
            body = node.attach_body()
            body[field] = value
            r = post(body)
            assert r.status_code == 400 and error_of(r) == "bad_request", (field, r.text)

        no_ollama_but_models = {**sample_manifest(), "ollama": {"version": None}}
        r = node.attach(manifest=no_ollama_but_models)
        assert r.status_code == 400 and "manifest.models must be empty" in r.json()["detail"]

        s = stats(url)
        assert s["attaches"] == []
        codes = [f["error"] for f in s["verificationFailures"]]
        assert codes.count("key_mismatch") == 1 and codes.count("bad_signature") == 4
        assert codes.count("unknown_node") == 1


# --- heartbeat ---------------------------------------------------------------------------------------

def test_heartbeat_recorded_with_increasing_seq(signer, other):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}") as (proc, url):
        node = FakeNode(url, NODE, signer)
        early = FakeNode(url, NODE, other).heartbeat(1)
        assert early.status_code == 403 and error_of(early) == "key_mismatch"
        assert node.attach().status_code == 200
        before = now_ms()
        for seq in (1, 2, 5):
            r = node.heartbeat(seq)
            assert r.status_code == 200 and r.json() == {"state": "active"}, r.text
        replay = node.heartbeat(5)
        assert replay.status_code == 400 and error_of(replay) == "bad_request"

        # after attach, a signature over other text is a node bug, not a wrong key
        body = node.heartbeat_body(6)
        body["signature"] = signer.sign(f"parallelix-node:heartbeat:{NODE}:{body['timestamp'] + 1}")
        r = requests.post(f"{url}/operator/heartbeat", json=body)
        assert r.status_code == 400 and error_of(r) == "bad_signature"

        load = {"busy": 0, "slots": 2, "ready": 2, "accepting": True, "served": 0}
        for field, value in (("seq", "6"), ("seq", 0), ("load", {**load, "busy": True}),
                             ("load", {**load, "accepting": "yes"}),
                             ("load", {**load, "accepting": 1}),
                             ("load", {k: v for k, v in load.items() if k != "ready"})):
            body = node.heartbeat_body(6)
            body[field] = value
            r = requests.post(f"{url}/operator/heartbeat", json=body)
            assert r.status_code == 400 and error_of(r) == "bad_request", (field, r.text)

        # a restarted daemon attaches again and counts from 1
        assert node.attach().status_code == 200
        assert node.heartbeat(1).status_code == 200
        s = stats(url)
        beats = s["heartbeats"]
        assert [b["seq"] for b in beats] == [1, 2, 5, 1]
        assert all(b["nodeId"] == NODE and b["load"]["slots"] == 2 for b in beats)
        assert all(before - 1000 <= b["receivedMs"] <= now_ms() + 1000 for b in beats)
        assert [b["receivedMono"] for b in beats] == sorted(b["receivedMono"] for b in beats)
        assert s["seqViolations"] == 1


# --- inbox -------------------------------------------------------------------------------------------

def test_inbox_204_then_request_with_exactly_the_protocol_fields(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--deadline-ms", "90000") as (proc, url):
        node = FakeNode(url, NODE, signer)
        empty = node.poll()
        assert empty.status_code == 204 and empty.content == b""
        rid = admin(url, "enqueue", {"prompt": "Why is the sky blue?", "system": "Be brief.",
                                     "options": {"temperature": 0, "seed": 1}})["requestId"]
        assert rid == "req_0001"
        before = now_ms()
        request = dispatched(node)
        assert set(request) == {"id", "model", "prompt", "system", "options", "deadlineMs"}
        assert request["id"] == rid and request["model"] == "llama3.2"
        assert request["prompt"] == "Why is the sky blue?" and request["system"] == "Be brief."
        assert request["options"] == {"temperature": 0, "seed": 1}
        assert before + 89_000 <= request["deadlineMs"] <= now_ms() + 91_000

        assert admin(url, "enqueue", {"prompt": "second", "model": "qwen2.5"})["requestId"] == "req_0002"
        second = dispatched(node)
        assert (second["id"], second["model"], second["system"]) == ("req_0002", "qwen2.5", None)
        assert second["options"] == {"temperature": 0.7, "num_predict": 256}

        bad = requests.get(f"{url}/operator/inbox", params={"nodeId": NODE},
                           headers={"X-Parallelix-Timestamp": str(now_ms()), "X-Parallelix-Signature": "0xzz"})
        assert bad.status_code == 400 and error_of(bad) == "bad_signature"
        s = stats(url)
        assert [d["requestId"] for d in s["dispatches"]] == ["req_0001", "req_0002"]
        assert s["inflight"] == ["req_0001", "req_0002"] and s["queued"] == []


def test_long_poll_returns_a_request_enqueued_during_the_wait(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}") as (proc, url):
        node = FakeNode(url, NODE, signer)
        started = time.monotonic()
        short = node.poll(wait_ms=300)
        assert short.status_code == 204 and time.monotonic() - started >= 0.3

        answer: list[requests.Response] = []
        poller = threading.Thread(target=lambda: answer.append(node.poll(wait_ms=20_000)))
        started = time.monotonic()
        poller.start()
        wait_for(url, lambda s: s["polls"] == 2, what="the long poll to be held")
        assert not answer
        rid = admin(url, "enqueue", {"prompt": "late arrival"})["requestId"]
        poller.join(15)
        assert answer and answer[0].status_code == 200
        assert answer[0].json()["request"]["id"] == rid
        assert time.monotonic() - started < 10


def test_prompts_file_jsonl_and_plain_text(tmp_path, signer):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "json one", "system": "sys", "model": "m2", "options": {"num_predict": 8}}\n'
                       "plain text line\n\n"
                       '{"prompt": "json two"}\n', encoding="utf-8")
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "from flag",
                               "--prompts-file", str(prompts), "--model", "tiny",
                               "--options", '{"num_predict": 4}') as (proc, url):
        node = FakeNode(url, NODE, signer)
        got = [dispatched(node) for _ in range(4)]
        assert [(r["id"], r["prompt"]) for r in got] == [
            ("req_0001", "from flag"), ("req_0002", "json one"), ("req_0003", "plain text line"),
            ("req_0004", "json two")]
        assert (got[1]["model"], got[1]["system"], got[1]["options"]) == ("m2", "sys", {"num_predict": 8})
        assert (got[3]["model"], got[3]["options"]) == ("tiny", {"num_predict": 4})
        assert node.poll().status_code == 204


# --- results and failures ----------------------------------------------------------------------------

def test_result_accepted_once_duplicate_409_bad_poe_400(signer, other):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--node", f"8={other.address}",
                               "--prompt", "p") as (proc, url):
        node = FakeNode(url, NODE, signer)
        rid = dispatched(node)["id"]
        text = "The sky is blue — Rayleigh scattering. ✓"

        body = node.result_body(rid, text)
        body["poe"] = node.poe(rid, text + " ")
        body["poeSignature"] = signer.sign(f"parallelix-node:poe:{rid}:{body['poe']}")
        r = node.post_result(body)
        assert r.status_code == 400 and error_of(r) == "bad_poe"

        body = node.result_body(rid, text)
        body["poeSignature"] = signer.sign(f"parallelix-node:poe:{rid}:0x{'0' * 64}")
        r = node.post_result(body)
        assert r.status_code == 400 and error_of(r) == "bad_signature"

        unknown = node.post_result(node.result_body("req_9999", text))
        assert unknown.status_code == 400 and error_of(unknown) == "bad_request"
        stranger = FakeNode(url, 8, other).post_result(FakeNode(url, 8, other).result_body(rid, text))
        assert stranger.status_code == 400 and error_of(stranger) == "bad_request"
        assert stats(url)["accepted"] == 0

        first = node.post_result(node.result_body(rid, text))
        assert first.status_code == 200 and first.json() == {"accepted": True}
        again = node.post_result(node.result_body(rid, text))
        assert again.status_code == 409 and error_of(again) == "already_submitted"

        s = stats(url)
        assert s["accepted"] == 1 and s["duplicates"] == {rid: 1} and s["duplicateCount"] == 1
        assert s["results"][rid]["result"] == text and s["results"][rid]["nodeId"] == NODE
        assert s["results"][rid]["metrics"]["modelDigest"] == "a80c4f17acd5"
        kept = s["results"][rid]
        assert pv.recover_address(f"parallelix-node:poe:{rid}:{kept['poe']}", kept["poeSignature"]) == signer.address
        assert pv.recover_address(f"parallelix-node:result:{rid}", kept["signature"]) == signer.address
        assert s["requests"][rid]["state"] == "done" and s["pending"] == 0
    assert f"result {rid} from node {NODE}: signature ok, poe ok, poeSignature ok -> 200 accepted" in proc.log


def test_failure_report_redispatches_then_fails_for_good(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "p",
                               "--max-attempts", "2") as (proc, url):
        node = FakeNode(url, NODE, signer)
        rid = dispatched(node)["id"]
        bad_code = node.failure_body(rid, "exploded")
        r = node.post_result(bad_code)
        assert r.status_code == 400 and error_of(r) == "bad_request"

        r = node.post_result(node.failure_body(rid, "inference_failed"))
        assert r.status_code == 200 and r.json() == {"accepted": True}
        assert stats(url)["requests"][rid]["state"] == "queued"
        assert dispatched(node)["id"] == rid

        r = node.post_result(node.failure_body(rid, "overloaded"))
        assert r.status_code == 200
        s = stats(url)
        assert s["failedFinal"] == [rid] and s["requests"][rid]["attempts"] == 2
        assert s["failures"] == {"inference_failed": 1, "overloaded": 1}
        assert s["done"] is True
        assert node.poll().status_code == 204


def test_unanswered_request_is_requeued_after_its_deadline(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--grace-ms", "100") as (proc, url):
        node = FakeNode(url, NODE, signer)
        rid = admin(url, "enqueue", {"prompt": "slow", "timeoutMs": 200})["requestId"]
        assert dispatched(node)["id"] == rid
        wait_for(url, lambda s: s["deadlineRequeues"] == 1 and s["queued"] == [rid], what="a deadline re-queue")
        again = dispatched(node)
        assert again["id"] == rid
        assert [d["attempt"] for d in stats(url)["dispatches"]] == [1, 2]


def test_enforced_deadline_answers_410(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--enforce-deadlines",
                               "--grace-ms", "60000") as (proc, url):
        node = FakeNode(url, NODE, signer)
        admin(url, "enqueue", {"prompt": "p", "timeoutMs": 1})
        request = dispatched(node)
        while now_ms() <= request["deadlineMs"]:
            time.sleep(0.005)
        r = node.post_result(node.result_body(request["id"], "late"))
        assert r.status_code == 410 and error_of(r) == "expired"
        assert stats(url)["accepted"] == 0 and len(stats(url)["expired"]) == 1


# --- sampled verification (--verify-sample, the bench mode) ---------------------------------------

def test_default_recovers_every_signature(signer, other):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "p") as (proc, url):
        node, impostor = FakeNode(url, NODE, signer), FakeNode(url, NODE, other)
        assert node.attach().status_code == 200
        for _ in range(3):
            r = impostor.poll()
            assert r.status_code == 400 and error_of(r) == "bad_signature"
        rid = dispatched(node)["id"]
        forged = impostor.result_body(rid, "forged")
        r = node.post_result(forged)
        assert r.status_code == 400 and error_of(r) == "bad_signature"
        assert node.post_result(node.result_body(rid, "fine")).status_code == 200
        # attach 1, polls 3 + 1, the forged result's first signature 1, the good result 2
        assert stats(url)["signatures"] == {"verifyEvery": 1, "verified": 8, "skipped": 0}


def test_sampled_mode_refuses_a_bad_signature_when_sampled_and_a_bad_poe_always(signer, other):
    """With 1 in 3: polls and results are counted apart, the first of each recovered."""
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--verify-sample", "3",
                               "--prompt", "a", "--prompt", "b") as (proc, url):
        node, impostor = FakeNode(url, NODE, signer), FakeNode(url, NODE, other)
        assert node.attach().status_code == 200        # attach: always recovered
        polls = [impostor.poll(wait_ms=0) for _ in range(4)]
        assert [r.status_code for r in polls] == [400, 200, 200, 400]   # polls 0 and 3 sampled
        assert error_of(polls[0]) == error_of(polls[3]) == "bad_signature"
        taken = [polls[1].json()["request"]["id"], polls[2].json()["request"]["id"]]
        garbled = requests.get(f"{url}/operator/inbox", params={"nodeId": NODE},
                               headers={"X-Parallelix-Timestamp": str(now_ms()),
                                        "X-Parallelix-Signature": "0xzz"})   # poll 4: not sampled
        assert garbled.status_code == 400 and error_of(garbled) == "bad_signature"

        first, second = taken
        results = []
        results.append(node.post_result(impostor.result_body(first, "forged")))   # result 0: sampled
        bad_poe = node.result_body(first, "text")
        bad_poe["poe"] = node.poe(first, "other text")
        results.append(node.post_result(bad_poe))                                 # 1: not sampled
        unknown = node.post_result(node.result_body("req_9999", "x"))             # not counted
        assert unknown.status_code == 400 and error_of(unknown) == "bad_request"
        results.append(node.post_result(impostor.result_body(first, "unchecked")))  # 2: not sampled
        bad_poe_sig = node.result_body(second, "text")
        bad_poe_sig["poeSignature"] = other.sign(f"parallelix-node:poe:{second}:{bad_poe_sig['poe']}")
        results.append(node.post_result(bad_poe_sig))                             # 3: sampled
        results.append(node.post_result(node.result_body(second, "text")))        # 4: not sampled
        assert [r.status_code for r in results] == [400, 400, 200, 400, 200]
        assert [error_of(results[i]) for i in (0, 1, 3)] == ["bad_signature", "bad_poe", "bad_signature"]

        s = stats(url)
        assert s["accepted"] == 2 and s["results"][first]["result"] == "unchecked"
        # recovered: attach 1, polls 0 and 3, result 0's signature, result 3's two
        # not sampled: polls 1 and 2 (poll 4 failed its format check), result 1's first
        # signature (its poe failed), result 2's two, result 4's two
        assert s["signatures"] == {"verifyEvery": 3, "verified": 6, "skipped": 7}
    assert "signature not sampled" in proc.log
    assert "signatures: 6 verified, 7 not sampled (1 in 3)" in proc.summary


def test_verify_sample_must_be_positive():
    for bad in ("0", "-2", "x"):
        with pytest.raises(RuntimeError, match="verify-sample"):
            with start_dev_coordinator("--verify-sample", bad):
                pass


# --- fault injection ----------------------------------------------------------------------------------

def test_deny_answers_every_operator_endpoint(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "p",
                               "--deny", "in_cooldown") as (proc, url):
        node = FakeNode(url, NODE, signer)
        calls = {"attach": node.attach, "heartbeat": lambda: node.heartbeat(1), "inbox": node.poll,
                 "result": lambda: node.post_result(node.result_body("req_0001", "x"))}
        for name, call in calls.items():
            r = call()
            assert r.status_code == 403 and error_of(r) == "in_cooldown", name
        assert requests.get(f"{url}/network").status_code == 200

        admin(url, "deny", {"code": "unknown_node"})
        r = node.heartbeat(1)
        assert r.status_code == 404 and error_of(r) == "unknown_node"
        admin(url, "deny", {"code": None})
        assert node.attach().status_code == 200
        admin(url, "deny", {"code": "retired"})
        r = node.poll()
        assert r.status_code == 403 and error_of(r) == "retired"
        s = stats(url)
        assert s["denied"] == 6 and s["verificationFailures"] == [] and s["queued"] == ["req_0001"]


def test_deny_after_results(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "a", "--prompt", "b",
                               "--deny-after-results", "1") as (proc, url):
        node = FakeNode(url, NODE, signer)
        rid = dispatched(node)["id"]
        assert node.post_result(node.result_body(rid, "done")).status_code == 200
        r = node.poll()
        assert r.status_code == 403 and error_of(r) == "not_staked"
        assert stats(url)["queued"] == ["req_0002"]


def test_lost_ack_makes_the_node_retry_and_the_result_counts_once(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "p",
                               "--lose-acks", "1", "--seed", "3") as (proc, url):
        node = FakeNode(url, NODE, signer)
        rid = dispatched(node)["id"]
        body = node.result_body(rid, "answer")
        try:
            first = node.post_result(body)
            assert first.status_code >= 500, first.text
        except requests.ConnectionError:
            pass
        retry = requests.post(f"{url}/operator/result", json=body, timeout=10)
        assert retry.status_code == 409 and error_of(retry) == "already_submitted"
        s = stats(url)
        assert s["accepted"] == 1 and list(s["results"]) == [rid]
        assert s["duplicateCount"] == 1 and s["injected"]["loseAcks"] == 1


def test_fail_share_answers_503_until_turned_off(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--fail-share", "1") as (proc, url):
        node = FakeNode(url, NODE, signer)
        for call in (node.attach, lambda: node.heartbeat(1), node.poll):
            assert call().status_code == 503
        assert requests.get(f"{url}/network").status_code == 200
        assert admin(url, "faults", {"failShare": 0})["failShare"] == 0
        assert node.attach().status_code == 200
        s = stats(url)
        assert s["injected"]["failShare"] == 3 and len(s["attaches"]) == 1
        r = requests.post(f"{url}/_admin/faults", json={"failShare": 2})
        assert r.status_code == 400 and error_of(r) == "bad_request"


def test_bad_json_share_sends_malformed_inbox_bodies_without_losing_work(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "p",
                               "--bad-json-share", "1", "--seed", "1") as (proc, url):
        node = FakeNode(url, NODE, signer)
        for _ in range(8):
            r = node.poll()
            assert r.status_code == 200
            try:
                request = r.json()["request"]
            except (ValueError, TypeError):
                continue                                   # not JSON, or not an object
            assert not (isinstance(request, dict) and isinstance(request.get("id"), str)
                        and isinstance(request.get("prompt"), str)
                        and isinstance(request.get("deadlineMs"), int)), request
        assert stats(url)["queued"] == ["req_0001"]
        admin(url, "faults", {"badJsonShare": 0})
        assert dispatched(node)["id"] == "req_0001"


# --- strict bodies ----------------------------------------------------------------------------------

def test_bodies_are_validated_strictly(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "p") as (proc, url):
        node = FakeNode(url, NODE, signer)
        rid = dispatched(node)["id"]
        cases = [
            requests.post(f"{url}/operator/result", data=b"{not json", headers={"Content-Type": "application/json"}),
            requests.post(f"{url}/operator/result", data=json.dumps(node.result_body(rid, "x")),
                          headers={"Content-Type": "text/plain"}),
            node.post_result({**node.result_body(rid, "x"), "error": {"code": "timeout"}}),
            node.post_result({**node.result_body(rid, "x"), "metrics": {"evalCount": "3"}}),
            node.post_result({**node.result_body(rid, "x"), "result": None}),
            requests.get(f"{url}/operator/inbox", params={"nodeId": "seven"}),
        ]
        for r in cases:
            assert r.status_code == 400 and error_of(r) == "bad_request", r.text
        assert stats(url)["accepted"] == 0


# --- exit and summary -------------------------------------------------------------------------------

def test_sigterm_prints_summary_and_writes_stats_json(tmp_path, signer):
    out = tmp_path / "summary.json"
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "p",
                               "--summary-json", str(out)) as (proc, url):
        node = FakeNode(url, NODE, signer)
        rid = dispatched(node)["id"]
        assert node.post_result(node.result_body(rid, "fine")).status_code == 200
    assert proc.returncode == 0
    assert proc.summary.splitlines()[0] == "dev-coordinator summary"
    assert "1 accepted" in proc.summary and "0 duplicate" in proc.summary
    saved = json.loads(out.read_text())
    assert saved["results"][rid]["result"] == "fine" and saved["done"] is True


def test_exit_when_done(signer):
    with start_dev_coordinator("--node", f"{NODE}={signer.address}", "--prompt", "a", "--prompt", "b",
                               "--exit-when-done") as (proc, url):
        node = FakeNode(url, NODE, signer)
        first, second = dispatched(node), dispatched(node)
        assert node.post_result(node.result_body(first["id"], "A")).status_code == 200
        assert proc.poll() is None
        assert node.post_result(node.result_body(second["id"], "B")).status_code == 200
        assert proc.wait(timeout=10) == 0
    assert "2 accepted" in proc.summary


def test_nodes_registered_at_runtime_and_admin_takes_plain_json(signer):
    with start_dev_coordinator() as (proc, url):
        node = FakeNode(url, NODE, signer)
        r = node.attach()
        assert r.status_code == 404 and error_of(r) == "unknown_node"
        added = admin(url, "nodes", {"nodeId": NODE, "key": signer.address})
        assert added == {"nodeId": NODE, "nodeKeyHash": node_key_hash(signer.address)}
        assert node.attach().status_code == 200
        r = requests.post(f"{url}/_admin/enqueue", data='{"prompt": "from curl"}')   # no Content-Type
        assert r.status_code == 200 and r.json() == {"requestId": "req_0001"}
        bad = requests.post(f"{url}/_admin/nodes", json={"nodeId": NODE, "key": "0x1234"})
        assert bad.status_code == 400 and error_of(bad) == "bad_request"
