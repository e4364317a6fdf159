"""The supervisor's link to the coordinator, on its event loop: the same calls and the same
reading of answers as the blocking `Coordinator` (node/coordinator.py builds and classifies
both), sent without a thread per call (ipc/asynchttp.py says why)."""
from urllib.parse import urlsplit

from ipc import asynchttp, httpclient
from node.coordinator import (CALL_TIMEOUT, CONNECT_TIMEOUT, Answer, Call, classify,
                              transport_error, user_agent)


class Link:
    def __init__(self, base_url: str, timeout: float = CALL_TIMEOUT) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self._http = asynchttp.Client(self.base, connect_timeout=CONNECT_TIMEOUT,
                                      headers=user_agent())
        self._root = urlsplit(self.base).path  # a base URL may carry a path

    async def call(self, call: Call) -> Answer:
        """Send one call and classify its answer (raises CoordinatorError/Denied/Rejected)."""
        try:
            resp = await self._http.request(call.method, self._root + call.path + call.query,
                                            body=call.encoded(), headers=call.headers,
                                            timeout=self.timeout + call.wait,
                                            max_bytes=call.max_bytes)
        except httpclient.HttpError as e:
            raise transport_error(self.base, call.path, e) from None
        return classify(call, resp)

    def close(self) -> None:
        self._http.close()
