"""The admin API (SPEC §13), one router for `app.py` to include: channels, users and keys,
redemption codes, every user's log, the dashboard, prices and the audit trail. Every route
here but a user's own password change (`PUT /api/user/self`) takes an admin
(`admin_common.admin_caller`); the tests walk `ADMIN_ROUTERS` so none is forgotten."""

from __future__ import annotations

from fastapi import APIRouter

from quotaledger.server import admin_channels, admin_records, admin_users

ADMIN_ROUTERS = (admin_channels.router, admin_users.router, admin_records.router)
router = APIRouter()
for _part in ADMIN_ROUTERS:
    router.include_router(_part)
