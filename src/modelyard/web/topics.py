"""A model's notifications page: its topic's subscriptions and each one's latest deliveries (state,
attempts, the last HTTP status and error). Subscriptions need the write scope; a viewer without it sees
the API's refusal."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from modelyard.web.render import SignedIn, api, page

router = APIRouter()
DELIVERIES_SHOWN = 20


@router.get("/models/{name}/topic", response_class=HTMLResponse)
async def topic(request: Request, viewer: SignedIn, name: str) -> Response:
    """The model's topic: subscriptions, their deliveries counted by state, and the latest of each."""
    base = f"/api/v1/topics/{quote(name)}"
    async with api(request, viewer) as my:
        found, subs = await asyncio.gather(my.get(base), my.get(f"{base}/subscriptions"))
        logs = await asyncio.gather(
            *(
                my.get(f"{base}/subscriptions/{quote(s['id'])}/deliveries", limit=DELIVERIES_SHOWN)
                for s in subs["items"]
            )
        )
    return page(
        request, "topic.html", viewer, topic=found, subscriptions=list(zip(subs["items"], logs, strict=True))
    )
