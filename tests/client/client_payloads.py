"""What the fake providers say: answers, and payloads written from each provider's public
documentation (the URL above each one)."""

from __future__ import annotations

import gzip
import json
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quotaledger.tokens import generate_token

TOKEN = generate_token()  # a well-formed quotaledger token: the client checks its checksum
USER_ID = "42"
QL_KEY = generate_token("sk-ql-")  # a well-formed quotaledger API key
NEWAPI_KEY = "sk-" + "".join(secrets.choice(string.ascii_letters) for _ in range(48))


@dataclass
class Answer:
    """What the server sends for one request."""

    status: int = 200
    body: Any = b""  # bytes as they are, str as UTF-8, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    gzip: bool = False  # compressed with Content-Encoding, whatever Accept-Encoding said
    gzip_unlabelled: bool = False  # compressed without saying so
    delay: float = 0.0
    hang_up: bool = False  # close the connection without answering
    cut_short: bool = False  # promise more bytes than are sent, then close the connection

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            data = self.body
        elif isinstance(self.body, str):
            data = self.body.encode()
        else:
            data = json.dumps(self.body, ensure_ascii=False).encode()
        return gzip.compress(data) if self.gzip or self.gzip_unlabelled else data


def json_answer(body: Any, status: int = 200, **kwargs: Any) -> Answer:
    headers = {"Content-Type": "application/json; charset=utf-8", **kwargs.pop("headers", {})}
    return Answer(status=status, body=body, headers=headers, **kwargs)


# quotaledger (SPEC §4) and the reference page: `message: null`, quota 24,997,909 = $49.99.
QUOTALEDGER_SELF = {
    "success": True,
    "message": None,
    "data": {
        "id": 1,
        "username": "alice",
        "display_name": "alice",
        "group": "default",
        "role": 1,
        "status": 1,
        "quota": 24997909,
        "used_quota": 2091,
        "request_count": 12,
        "quota_usd": "49.99",
        "used_quota_usd": "0.00",
        "ModelFixedPrice": {"model-a": "0.02"},
    },
}

# one-api / new-api: `message: ""`, integer role and status, more fields, any ModelFixedPrice.
ONE_API_SELF = {
    "success": True,
    "message": "",
    "data": {
        "id": 7,
        "username": "bob",
        "display_name": "Bob",
        "role": 1,
        "status": 1,
        "email": "",
        "github_id": "",
        "quota": 10000000,
        "used_quota": 2500000,
        "request_count": 3,
        "group": "vip",
        "aff_code": "Xy3k",
        "inviter_id": 0,
        "ModelFixedPrice": [],
        "setting": "",
    },
}

NEWAPI_STATUS = {
    "success": True,
    "message": "",
    "data": {
        "version": "v0.6.10",
        "system_name": "New API",
        "quota_per_unit": 500000,
        "display_in_currency": True,
    },
}

# One-api family refusals (HTTP 200 on older servers, 401 on newer ones), verbatim: their
# full-width commas included.
INVALID_ACCESS_TOKEN = {"success": False, "message": "无权进行此操作，access token 无效"}  # noqa: RUF001
USER_BANNED = {"success": False, "message": "用户已被封禁"}
NO_USER_HEADER = {"success": False, "message": "无权进行此操作，未提供 New-Api-User"}  # noqa: RUF001

# https://openrouter.ai/docs/api/api-reference/credits/get-credits
OPENROUTER_CREDITS = {"data": {"total_credits": 100.5, "total_usage": 25.75}}
OPENROUTER_MANAGEMENT_ONLY = {
    "error": {"code": 403, "message": "Only management keys can perform this operation"}
}
# https://openrouter.ai/docs/api/api-reference/api-keys/get-current-key
OPENROUTER_KEY = {
    "data": {
        "label": "sk-or-v1-au7...890",
        "limit": 100,
        "limit_remaining": 74.5,
        "limit_reset": "monthly",
        "include_byok_in_limit": False,
        "usage": 25.5,
        "usage_daily": 25.5,
        "usage_weekly": 25.5,
        "usage_monthly": 25.5,
        "byok_usage": 17.38,
        "is_free_tier": False,
        "is_management_key": False,
        "is_provisioning_key": False,
    }
}

# https://api-docs.deepseek.com/api/get-user-balance
DEEPSEEK_BALANCE = {
    "is_available": True,
    "balance_infos": [
        {
            "currency": "CNY",
            "total_balance": "110.00",
            "granted_balance": "10.00",
            "topped_up_balance": "100.00",
        }
    ],
}

# https://docs.siliconflow.cn/cn/api-reference/userinfo/get-user-info
SILICONFLOW_USER_INFO = {
    "code": 20000,
    "message": "OK",
    "status": True,
    "data": {
        "id": "userid",
        "name": "username",
        "image": "user_avatar_image_url",
        "email": "user_email_address",
        "isAdmin": False,
        "balance": "0.88",
        "status": "normal",
        "introduction": "",
        "role": "",
        "chargeBalance": "88.00",
        "totalBalance": "88.88",
    },
}

# https://platform.moonshot.cn/docs/api/balance
MOONSHOT_BALANCE = {
    "code": 0,
    "data": {"available_balance": 49.58894, "voucher_balance": 46.58893, "cash_balance": 3.00001},
    "scode": "0x0",
    "status": True,
}
MOONSHOT_INVALID_KEY = {
    "error": {"message": "Invalid Authentication", "type": "invalid_authentication_error"}
}


# GET /api/usage/token (SPEC §9), recorded in fixtures/ (see its README): key "laptop",
# 2,100,000 quota ($4.20) left of 2,500,000 ($5.00), 400,000 ($0.80) used.
_FIXTURES = Path(__file__).parent / "fixtures"
NEWAPI_USAGE: dict[str, Any] = json.loads((_FIXTURES / "newapi_token_usage.json").read_text())
QUOTALEDGER_USAGE: dict[str, Any] = json.loads(
    (_FIXTURES / "quotaledger_token_usage.json").read_text()
)


def key_usage(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`base` (a recorded usage answer) with some of its `data` fields changed."""
    return {**base, "data": {**base["data"], **changes}}
