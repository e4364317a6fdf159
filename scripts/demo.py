#!/usr/bin/env python3
"""The README's first command: a whole node run on this machine, checked end to end.

It makes a node key in a throwaway home, starts a local coordinator with a few prompts, uses a
real Ollama when one answers with the model (else the project's stand-in), runs the node until
every prompt has an outcome, then re-checks every result with code of its own (hashlib for the
PoE, eth_keys for both signatures; not node.identity), stops everything and deletes the home.
Exit 0 only if every prompt was accepted and verified.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file, too
from scripts import harness  # noqa: E402
from scripts import protocol_verify as pv  # noqa: E402
from scripts.harness import Children, HarnessError  # noqa: E402

NODE_ID = 1
WORKERS = 2
PROBE_TIMEOUT = 2.0
TIMEOUT_REAL, TIMEOUT_STANDIN = 120.0, 60.0
WIDTH = 72
OPTIONS = {"temperature": 0.7, "num_predict": 96}
PROMPTS: list[dict[str, Any]] = [
    {"prompt": "In one sentence: what is a proof of execution?"},
    {"prompt": "Say hello in 日本語, Ελληνικά and español 👋 (one line each)."},
    {"prompt": "Continue the list, one item per line:\n1. red\n2. green\n3."},
    {"prompt": "Why is the sky blue?",
     "system": "You are a terse physicist. Answer in at most twelve words."},
    {"prompt": "Write a haiku about a GPU that never sleeps."},
    {"prompt": "What is 17 × 23? Reply with the number only."},
    {"prompt": "Write a Python one-liner that reverses the string s."},
]


def say(line: str = "") -> None:
    print(line, flush=True)


def short(text: str, width: int = WIDTH) -> str:
    """One line (newlines shown as ↵), cut to `width` characters."""
    flat = text.replace("\n", "↵")
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def probe_ollama(url: str, model: str) -> str | None:
    """Why the Ollama at `url` cannot serve the demo, or None when it can."""
    from workers.ollama import OllamaError, has_model, list_models
    try:
        models = list_models(url, timeout=PROBE_TIMEOUT)
    except OllamaError:
        return f"no Ollama answered at {url}"
    if not has_model(models, model):
        return (f"the Ollama at {url} does not have {model} "
                f"(get it with: parallelix-node models pull {model})")
    return None


def choose_ollama(kids: Children, model: str, force_standin: bool) -> tuple[str, bool]:
    """The Ollama URL to serve from, and whether it is the stand-in; says which and why."""
    from node.errors import ConfigError
    from node.settings import parse_ollama_host
    if force_standin:
        reason = "--standin given"
    else:
        try:
            url = parse_ollama_host(os.environ.get("OLLAMA_HOST"))
            reason = probe_ollama(url, model)
        except ConfigError as e:
            reason = f"OLLAMA_HOST is not usable ({e})"
        if reason is None:
            say(f"Using the real Ollama at {url} (it has {model}).")
            return url, False
    standin = kids.standin(model, token_ms=5)
    say(f"{reason}; using the project's Ollama stand-in at {standin.url} "
        "(it answers \"echo: <prompt>\").")
    return standin.url, True


def wait_for_outcomes(coordinator: harness.Child, node: harness.Child, timeout: float) -> None:
    """Until the coordinator exits by itself (--exit-when-done); fails if the node dies first."""
    end = time.monotonic() + timeout
    while coordinator.wait(0.2) is None:
        if node.proc.poll() is not None:
            raise HarnessError(f"the node exited with status {node.proc.returncode} before every "
                               "prompt was served (its log is above)")
        if time.monotonic() > end:
            raise HarnessError(f"not every prompt had an outcome after {timeout:.0f} s; "
                               "stopping everything")
    if coordinator.proc.returncode != 0:
        raise HarnessError(f"the coordinator failed (exit {coordinator.proc.returncode}): "
                           f"{coordinator.last_words()}")


def signer_of(text: str, signature: str) -> str | None:
    """Who personal-signed `text`, by the dev coordinator's verifier (eth_keys, not the node's
    signing code); None for a garbled signature."""
    try:
        return pv.recover_address(text, signature)
    except pv.SignatureFormatError:
        return None


@dataclass
class Check:
    """The demo's own verdict on one accepted result."""
    poe: bool
    signature: bool
    poe_signature: bool

    @property
    def ok(self) -> bool:
        return self.poe and self.signature and self.poe_signature


def check(request_id: str, body: dict[str, Any], address: str) -> Check:
    """PoE = sha256(requestId ‖ result ‖ nodeId), and both signatures by the node's address."""
    poe = pv.expected_poe(request_id, body["result"], NODE_ID)
    return Check(poe=body["poe"] == poe,
                 signature=signer_of(pv.result_text(request_id), body["signature"]) == address,
                 poe_signature=signer_of(pv.poe_text(request_id, poe),
                                         body["poeSignature"]) == address)


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def report(stats: dict[str, Any], address: str) -> bool:
    """Print each request with its result and verdict; True if all were accepted and verified."""
    systems = {p["prompt"]: p["system"] for p in PROMPTS if "system" in p}
    say("What was served, re-checked here with hashlib (PoE) and eth_keys (signatures must "
        f"recover to {address}):")
    verified = 0
    for rid, req in stats["requests"].items():
        body = stats["results"].get(rid)
        verdict = check(rid, body, address) if body else None
        verified += bool(verdict and verdict.ok)
        say(f"{mark(bool(verdict and verdict.ok))} {rid}  {short(req['prompt'])}")
        if req["prompt"] in systems:
            say(f"    system  {short(systems[req['prompt']])}")
        if verdict is None:
            say(f"    not served: {'; '.join(req['outcomes']) or req['state']}")
            continue
        say(f"    result  {short(body['result'])}")
        say(f"    poe     {body['poe']} {mark(verdict.poe)} recomputed")
        say(f"    signed  signature {mark(verdict.signature)}  "
            f"poeSignature {mark(verdict.poe_signature)}")
    total, accepted = len(stats["requests"]), len(stats["results"])
    say()
    if verified == total:
        say(f"{total}/{total} results accepted; every signature and PoE verified independently")
    else:
        say(f"{accepted}/{total} results accepted; {verified}/{total} verified independently")
    return verified == total


def run(args: argparse.Namespace, work: Path, kids: Children) -> bool:
    """The whole demo inside one temp folder; True on full success."""
    home = work / "home"
    address = harness.init_home(home)
    say(f"Made a node key in {home}: address {address}")
    ollama, standin = choose_ollama(kids, args.model, args.standin)
    summary = work / "summary.json"
    prompts = harness.write_prompts(work / "prompts.jsonl", PROMPTS)
    coordinator = kids.coordinator(
        "--node", f"{NODE_ID}={address}", "--prompts-file", str(prompts),
        "--model", args.model, "--options", json.dumps(OPTIONS), "--heartbeat-ms", "2000",
        "--exit-when-done", "--summary-json", str(summary))
    say(f"Local coordinator at {coordinator.url} with {len(PROMPTS)} prompts for node {NODE_ID}.")
    say(f"Starting the node: parallelix-node start --node-id {NODE_ID} --workers {WORKERS}")
    node = kids.node(home, NODE_ID, coordinator.url, ollama, WORKERS, args.model,
                     on_line=lambda line: say(f"node | {line}"))
    wait_for_outcomes(coordinator, node, TIMEOUT_STANDIN if standin else TIMEOUT_REAL)
    say("Every prompt has an outcome; stopping the node (SIGTERM).")
    code = node.stop()
    say(f"The node stopped with exit status {code}." + (
        " It left processes behind; they were killed." if node.left_behind else ""))
    say()
    verified = report(json.loads(summary.read_text(encoding="utf-8")), address)
    return verified and code == 0 and not node.left_behind


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="llama3.2", help="model to serve (default llama3.2)")
    p.add_argument("--standin", action="store_true",
                   help="use the Ollama stand-in even if a real Ollama answers")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(errors="replace")
    try:
        with tempfile.TemporaryDirectory(prefix="pxdemo-") as work, Children() as kids:
            ok = run(args, Path(work), kids)
    except HarnessError as e:
        say(f"demo: error: {e}")
        return 1
    except KeyboardInterrupt:
        say("demo: interrupted; every process it started has been stopped")
        return 130
    say("Stopped every process and deleted the demo home.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
