#!/usr/bin/env python3
"""The bench's baseline: a plain Python client calling Ollama (or the stand-in) directly.

    python scripts/direct_client.py URL PROMPTS_JSONL CLIENTS

Each of CLIENTS threads streams `POST /api/generate` for its share of the prompts over one
kept-alive connection, reading every NDJSON line. Prints one JSON line: the wall-clock
seconds of the whole run and each call's latency in milliseconds. Its own CPU time is what the
bench reads (os.wait4), so it runs as a process of its own."""
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit

MODEL = "llama3.2"
OPTIONS = {"temperature": 0.7, "num_predict": 64}


def run_share(url: str, prompts: list[str], latencies: list[float]) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    for prompt in prompts:
        body = json.dumps({"model": MODEL, "prompt": prompt, "options": OPTIONS, "stream": True})
        started = time.perf_counter()
        conn.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        chunks = [json.loads(line) for line in resp.read().splitlines() if line]
        latencies.append((time.perf_counter() - started) * 1000)
        if resp.status != 200 or not chunks or not chunks[-1].get("done"):
            raise SystemExit(f"direct call failed: {resp.status} {chunks[-1:]}")
    conn.close()


def main() -> int:
    url, path, clients = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(path, encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    latencies: list[float] = []
    threads = [threading.Thread(target=run_share, args=(url, prompts[i::clients], latencies))
               for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"seconds": time.perf_counter() - started, "latenciesMs": latencies}))
    return 0 if len(latencies) == len(prompts) else 1


if __name__ == "__main__":
    sys.exit(main())
