"""Fair use of the Space: how much work one request may ask for, and how many requests one client may
have waiting or running at once. The limits themselves are constants in `webapp/settings.py`."""

from __future__ import annotations

import ipaddress
import json

from webapp.settings import MAX_CLASSIFY_PASSES, MAX_GENERATION_WORK, MAX_QUEUED_PER_CLIENT


def check_generation_work(length: int, steps: int, samples: int, guidance: float, family: str = "masked") -> None:
    """Refuse a generation whose work (positions written x forward passes x samples, twice with guidance)
    is above MAX_GENERATION_WORK; ValueError naming the product and what to lower."""
    passes = length if family == "causal" else steps  # an AR model runs one pass per token
    rows = samples * (2 if guidance and family != "causal" else 1)
    work = length * passes * rows
    if work > MAX_GENERATION_WORK:
        what = (f"{length} tokens x {passes} {'tokens' if family == 'causal' else 'steps'} x {samples} sample(s)"
                + (" x 2 (guidance)" if rows > samples else ""))
        raise ValueError(f"this generation asks for {work:,} units of work ({what}); the limit per request is "
                         f"{MAX_GENERATION_WORK:,}: lower the length, the steps or the samples")


def check_classify_work(texts: int, labels: int, samples: int, pieces: int | None = None) -> None:
    """Refuse a classification whose forward passes (pieces x labels x mask patterns) exceed MAX_CLASSIFY_PASSES.

    pieces: the rows the texts are scored as (a long text is read as several pieces); default one per text."""
    pieces = texts if pieces is None else pieces
    passes = pieces * labels * samples
    if passes > MAX_CLASSIFY_PASSES:
        fit = max(1, MAX_CLASSIFY_PASSES // (labels * samples))
        what = f"{texts} texts" if pieces == texts else f"{texts} texts read as {pieces} pieces"
        raise ValueError(f"this classification needs up to {passes:,} forward passes ({what} x {labels} labels "
                         f"x {samples} samples); the limit per request is {MAX_CLASSIFY_PASSES:,}: at these settings "
                         f"classify at most {fit} {'texts' if pieces == texts else 'pieces'} (fewer or shorter "
                         f"texts), or lower the samples or the labels")


def pieces_within(counts: list[int], labels: int, samples: int, max_pieces: int) -> int | None:
    """The most pieces per text (<= max_pieces) at which texts of `counts` pieces fit MAX_CLASSIFY_PASSES,
    or None when even their first pieces alone do not."""
    for pieces in range(max_pieces, 0, -1):
        if sum(min(c, pieces) for c in counts) * labels * samples <= MAX_CLASSIFY_PASSES:
            return pieces
    return None


def _private(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in ("localhost", "testclient")
    return address.is_private or address.is_loopback


def client_key(headers: dict[str, str], peer: str | None) -> str:
    """Who sent a request: the first X-Forwarded-For address when the connection comes from a proxy (a
    loopback or private address, as on Spaces), else the connecting address. A client on the internet
    cannot pick its own key by sending the header: a public peer's header is ignored."""
    peer = peer or "unknown"
    forwarded = headers.get("x-forwarded-for")
    if forwarded and _private(peer):
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return peer


def _event_key(event) -> str:
    request = getattr(event, "request", None)
    if request is None:
        return ""
    return client_key({k.lower(): v for k, v in request.headers.items()}, request.client.host if request.client else None)


def pending_for(queue, key: str) -> int:
    """Requests of client `key` waiting in Gradio's queue or running now."""
    count = 0
    for events in queue.event_queue_per_concurrency_id.values():
        count += sum(1 for event in events.queue if event.alive and _event_key(event) == key)
    for job in queue.active_jobs:
        count += sum(1 for event in job or () if event.alive and _event_key(event) == key)
    return count


class ClientQueueLimit:
    """ASGI middleware: a client with MAX_QUEUED_PER_CLIENT requests already waiting or running gets a 429
    with a message (shown by the page's error toast) instead of another place in the queue, so one caller
    cannot fill the queue that everyone shares."""

    def __init__(self, app, limit: int = MAX_QUEUED_PER_CLIENT):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/queue/join"):
            blocks = getattr(scope.get("app"), "get_blocks", lambda: None)()
            queue = getattr(blocks, "_queue", None)
            if queue is not None:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
                key = client_key(headers, (scope.get("client") or (None,))[0])
                if pending_for(queue, key) >= self.limit:
                    await _refuse(send, f"You already have {self.limit} requests waiting or running; the limit per "
                                        "user keeps the Space fair. Wait for one to finish, then try again.")
                    return
        await self.app(scope, receive, send)


async def _refuse(send, message: str) -> None:
    body = json.dumps({"detail": message, "error": message}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
