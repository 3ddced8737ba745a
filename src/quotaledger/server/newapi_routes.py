"""new-api's user API (SPEC §9) on the framework: the log, groups and models, API keys and
redemption codes, one router for `app.py` to include."""

from __future__ import annotations

from fastapi import APIRouter

from quotaledger.server import key_routes, usage_routes, user_routes

router = APIRouter()
for _part in (usage_routes.router, user_routes.router, key_routes.router):
    router.include_router(_part)
