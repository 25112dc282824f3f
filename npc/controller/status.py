"""npc's ``/status``: JSON with readiness, syncs, and the resourceVersion the kernel reflects
(overall and per kind).

``/status?wait=RV[&kind=pods][&timeout=S]`` answers once the kernel reflects every write up
to resourceVersion ``RV`` (of that kind, or of every kind; see the README's "Waiting for a
write to be enforced") or after ``S`` seconds (default 10, at most 60), whichever comes
first.  The body is the status either way; ``applied`` in it says which.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from common.service.http import JSON, Handler, Request, Response

MAX_WAIT = 60.0


def status_handler(status: Callable[[], dict[str, object]],
                   wait_applied: Callable[[int, str | None, float], bool]) -> Handler:
    def handle(request: Request) -> Response:
        wait = request.arg("wait")
        if wait is None:
            body = status()
        else:
            try:
                rv = int(wait)
                timeout = min(MAX_WAIT, float(request.arg("timeout", "10") or "10"))
            except ValueError:
                return Response.text("wait and timeout must be numbers\n", 400)
            applied = wait_applied(rv, request.arg("kind"), timeout)
            # Taken once the wait is over (only then does it tell what was applied): a
            # status taken before it would be thrown away, and it would cost the event
            # being waited for (it takes the store's lock while the watch and the sync
            # work on that event).
            body = {**status(), "applied": applied}
        return Response(200, json.dumps(body, sort_keys=True).encode(), JSON)
    return handle
