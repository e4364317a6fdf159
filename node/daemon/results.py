"""Proof of execution and the signed result bodies (PROTOCOL.md, "Proof of execution").

Signing happens here, in the supervisor, over the exact text a worker returned: the body is
signed once, written to the outbox, and then posted as many times as delivery needs."""
import hashlib
from typing import Any

from ipc.messages import Metrics
from node.identity import Signer

FAILURE_CODES = ("model_not_found", "inference_failed", "timeout", "overloaded", "shutdown")


def proof_of_execution(request_id: str, result: str, node_id: int) -> str:
    """0x + sha256(utf8(requestId) ‖ utf8(result) ‖ utf8(decimal(nodeId)))."""
    digest = hashlib.sha256()
    digest.update(request_id.encode("utf-8"))
    digest.update(result.encode("utf-8"))
    digest.update(str(node_id).encode("utf-8"))
    return "0x" + digest.hexdigest()


def metrics_body(m: Metrics) -> dict[str, Any]:
    """PROTOCOL.md's optional metrics, leaving out what Ollama did not report."""
    body = {"evalCount": m.eval_count, "promptEvalCount": m.prompt_eval_count,
            "totalDurationMs": m.total_duration_ms, "loadDurationMs": m.load_duration_ms,
            "doneReason": m.done_reason, "modelDigest": m.model_digest}
    return {k: v for k, v in body.items() if v not in ("", None)}


def signed_success(signer: Signer, node_id: int, request_id: str, model: str, text: str,
                   metrics: Metrics) -> dict[str, Any]:
    poe = proof_of_execution(request_id, text, node_id)
    return {"nodeId": node_id, "requestId": request_id, "model": model, "result": text,
            "poe": poe, "signature": signer.sign(f"parallelix-node:result:{request_id}"),
            "poeSignature": signer.sign(f"parallelix-node:poe:{request_id}:{poe}"),
            "metrics": metrics_body(metrics)}


def signed_failure(signer: Signer, node_id: int, request_id: str, code: str,
                   message: str) -> dict[str, Any]:
    if code not in FAILURE_CODES:
        code = "inference_failed"
    return {"nodeId": node_id, "requestId": request_id,
            "error": {"code": code, "message": message[:500]},
            "signature": signer.sign(f"parallelix-node:error:{request_id}:{code}")}
