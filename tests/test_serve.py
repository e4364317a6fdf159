"""End to end, real processes over loopback: dev-coordinator -> node daemon -> workers ->
Ollama stand-in. Results are checked by the coordinator as it receives them, and again here
from its records, with its eth_keys-based verifier: code other than the node's signer."""
import json
import os
import signal


from node.daemon.outbox import unsettled
from node.home import Home
from node.commands.livestatus import query_live
from scripts import protocol_verify as pv
from tests.coord import admin, start_dev_coordinator, stats, wait_for
from tests.nodeproc import is_event, run_daemon
from tests.procs import start_standin

NODE_ID = 7


def expected_text(prompt: str, system: str | None = None) -> str:
    """The stand-in's documented reply rule."""
    return f"echo: [{system}] {prompt}" if system else f"echo: {prompt}"


def check_result(rid: str, body: dict, address: str) -> None:
    """PoE and both signatures, by the dev coordinator's verifier (eth_keys), not the signer."""
    poe = pv.expected_poe(rid, body["result"], NODE_ID)
    assert body["poe"] == poe
    assert pv.recover_address(pv.result_text(rid), body["signature"]) == address
    assert pv.recover_address(pv.poe_text(rid, poe), body["poeSignature"]) == address


def prompts_file(tmp_path, items: list[dict]) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    return str(path)


def test_dozens_of_varied_requests_all_accepted_and_verified(tmp_path, node_home, standin):
    home, address = node_home
    items = [{"prompt": f"question {i}: ünïcödé ☃ 日本語 🚀"} for i in range(12)]
    items += [{"prompt": f"line one {i}\nline two\n\ttabbed line\n"} for i in range(12)]
    items += [{"prompt": "x" * 20_000 + f" big {i}"} for i in range(3)]
    items += [{"prompt": f"with system {i}", "system": "You are terse."} for i in range(3)]
    items += [{"prompt": f"empty system {i}", "system": ""} for i in range(3)]
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--options", '{"temperature":0.7}',
                               "--prompts-file", prompts_file(tmp_path, items)) as (_, url):
        with run_daemon(home, NODE_ID, url, standin, "--workers", "2") as node:
            done = wait_for(url, lambda s: s["accepted"] == len(items), timeout=60,
                            what="every request accepted")
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    assert done["verificationFailures"] == []
    by_prompt = {r["prompt"]: r for r in done["requests"].values()}
    for item in items:
        rid = next(k for k, r in done["requests"].items() if r["prompt"] == item["prompt"])
        body = done["results"][rid]
        assert body["result"] == expected_text(item["prompt"], item.get("system"))
        assert body["metrics"]["doneReason"] == "stop"
        assert len(body["metrics"]["modelDigest"]) == 64
        check_result(rid, body, address)
    assert len(by_prompt) == len(items)
    served = [e for e in node.events if is_event("served")(e)]
    assert len(served) == len(items)
    assert all(e["poe"].startswith("0x") and int(e["ms"]) >= 0 for e in served)


def test_ollama_errors_become_failure_reports(tmp_path, node_home, standin):
    home, address = node_home
    items = [{"prompt": "breaks [[error-midstream]]"}, {"prompt": "crashes [[error-500]]"},
             {"prompt": "full [[busy]]"}, {"prompt": "cut [[eof]]"},
             {"prompt": "who?", "model": "no-such-model"}]
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--max-attempts", "1",
                               "--prompts-file", prompts_file(tmp_path, items)) as (_, url):
        with run_daemon(home, NODE_ID, url, standin):
            done = wait_for(url, lambda s: len(s["failedFinal"]) == len(items), timeout=60,
                            what="every request reported failed")
    codes = {r["prompt"]: r["outcomes"] for r in done["requests"].values()}
    assert done["verificationFailures"] == []
    assert done["accepted"] == 0
    assert done["failures"] == {"inference_failed": 3, "overloaded": 1, "model_not_found": 1}, codes


def test_coordinator_faults_and_lost_acks_deliver_each_result_once(tmp_path, node_home,
                                                                  standin):
    home, address = node_home
    n = 20
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--seed", "4",
                               *sum((["--prompt", f"p{i}"] for i in range(n)), [])) as (_, url):
        with run_daemon(home, NODE_ID, url, standin, "--workers", "2") as node:
            node.wait_event(is_event("attached"))
            admin(url, "faults", {"failShare": 0.3, "loseAcks": 0.5})
            wait_for(url, lambda s: s["accepted"] >= n // 2 and s["injected"]["loseAcks"] > 0,
                     timeout=90, what="results delivered through the faults")
            # Results still backing off (up to 60 s) wait for the next delivery that succeeds,
            # not for a timer: one more request, after the faults end, is that delivery.
            admin(url, "faults", {"failShare": 0.0, "loseAcks": 0.0})
            nudge = admin(url, "enqueue", {"prompt": "after the outage"})["requestId"]
            done = wait_for(url, lambda s: s["accepted"] == n + 1
                            and not unsettled(home / "outbox") or False, timeout=60,
                            what="every result delivered")
    assert done["injected"]["failShare"] > 0 and done["injected"]["loseAcks"] > 0
    assert sorted(done["results"]) == sorted(done["requests"]) and nudge in done["results"]
    assert done["verificationFailures"] == []


def test_undelivered_result_survives_sigkill_and_is_delivered_after_restart(tmp_path,
                                                                           node_home, standin):
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}",
                               "--prompt", "keep me [[sleep:3000]]") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            wait_for(url, lambda s: s["inflight"], what="the request dispatched")
            admin(url, "faults", {"failShare": 1.0})
            served = node.wait_event(is_event("served"))
            node.wait_event(is_event("result.retry"))
            os.kill(node.proc.pid, signal.SIGKILL)
            node.wait_exit(10)
        kept = unsettled(home / "outbox")
        assert len(kept) == 1 and kept[0]["poe"] == served["poe"]
        assert stats(url)["accepted"] == 0
        admin(url, "faults", {"failShare": 0.0})
        with run_daemon(home, NODE_ID, url, standin) as node:
            done = wait_for(url, lambda s: s["accepted"] == 1, timeout=30,
                            what="the kept result delivered")
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    rid, body = next(iter(done["results"].items()))
    assert body["poe"] == served["poe"]
    check_result(rid, body, address)
    assert unsettled(home / "outbox") == []


def test_malformed_inbox_answers_are_survived(tmp_path, node_home, standin):
    home, address = node_home
    n = 8
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--seed", "1",
                               "--bad-json-share", "0.4",
                               *sum((["--prompt", f"q{i}"] for i in range(n)), [])) as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            done = wait_for(url, lambda s: s["accepted"] == n, timeout=60,
                            what="all served despite bad inbox bodies")
            assert node.proc.poll() is None
    assert done["injected"]["badJsonShare"] > 0
    assert any("inbox" in e.get("event", "") for e in node.events
               if e.get("level") in ("warning", "error"))


def test_one_worker_per_ollama_endpoint_share_the_load(tmp_path, node_home):
    home, address = node_home
    n = 8
    with start_standin("--models", "llama3.2") as (_, one), \
            start_standin("--models", "llama3.2") as (_, two):
        with start_dev_coordinator("--node", f"{NODE_ID}={address}",
                                   *sum((["--prompt", f"gpu job {i} [[sleep:300]]"]
                                         for i in range(n)), [])) as (_, url):
            with run_daemon(home, NODE_ID, url, [one, two]) as node:
                wait_for(url, lambda s: s["accepted"] == n, timeout=60, what="all served")
                doc = query_live(Home(home))
                workers = doc["workers"]
                node.signal(signal.SIGTERM)
                assert node.wait_exit(30) == 0
    assert sorted(w["endpoint"] for w in workers) == sorted([one, two])
    assert doc["ollama"] == [one, two]
    assert all(w["served"] > 0 for w in workers) and sum(w["served"] for w in workers) == n
    assert f"node_id = {NODE_ID}" in (home / "config.toml").read_text()


def test_a_result_refused_as_malformed_is_kept_aside_and_never_retried(node_home, standin):
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--reject-results", "1",
                               "--prompt", "refuse me") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            refused = node.wait_event(is_event("result.rejected"))
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
        done = stats(url)
    kept = list((home / "outbox" / "rejected").glob("*.json"))
    assert refused["level"] == "error" and "bad_poe" in refused["error"]
    assert len(kept) == 1 and json.loads(kept[0].read_text())["requestId"] == refused["request"]
    assert unsettled(home / "outbox") == []
    assert done["injected"]["rejectResults"] == 1 and done["accepted"] == 0


def test_outbox_write_failure_delivers_from_memory_then_the_outbox_works_again(node_home,
                                                                                standin):
    """Disk full under the outbox, made real with RLIMIT_FSIZE on the running supervisor (the
    tests run as root, so permissions could not make a write fail): a signed result the
    outbox cannot hold is still delivered, from memory, and leaves no debris; once the disk
    takes writes again, results go through the outbox as before."""
    import resource
    home, address = node_home
    limit = 16_000
    big = "x" * (2 * limit)  # its signed result cannot be written under the limit
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--options", "{}") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            node.wait_event(is_event("attached"))
            pid = node.proc.pid
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))  # the disk fills up
            big_id = admin(url, "enqueue", {"prompt": big})["requestId"]
            failed = node.wait_event(is_event("outbox.write_failed"))
            wait_for(url, lambda s: big_id in s["results"], timeout=60, what="the big result")
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))  # space again
            small_id = admin(url, "enqueue", {"prompt": "small"})["requestId"]
            done = wait_for(url, lambda s: small_id in s["results"], timeout=30,
                            what="the next result")
            writes = [e for e in node.events if is_event("outbox.write_failed")(e)]
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    assert failed["request"] == big_id and "too large" in failed["reason"].lower()
    assert len(writes) == 1, writes  # the small one went through the outbox
    for rid, prompt in ((big_id, big), (small_id, "small")):
        assert done["results"][rid]["result"] == expected_text(prompt)
        check_result(rid, done["results"][rid], address)
    assert unsettled(home / "outbox") == [], "nothing left unsettled"
    assert [p.name for p in (home / "outbox").iterdir()] == ["journal"], "no other file left"
