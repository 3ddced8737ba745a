"""The schema, in SQLAlchemy Core. Migrations in `migrations/versions/` create it; this
module is what the code queries. Quota columns are 64-bit (new-api's 32-bit column caps a
balance near $4,295)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("group", String(64), nullable=False, server_default="default"),
    Column("role", String(16), nullable=False, server_default="user"),
    Column("status", String(16), nullable=False, server_default="enabled"),
    Column("quota", BigInteger, nullable=False, server_default="0"),
    Column("used_quota", BigInteger, nullable=False, server_default="0"),
    Column("request_count", BigInteger, nullable=False, server_default="0"),
    Column("granted_total", BigInteger, nullable=False, server_default="0"),
    # System token: SHA-256 hex of the token, a display hint, when it was issued.
    Column("token_hash", String(64), nullable=True, unique=True),
    Column("token_hint", String(16), nullable=True),
    Column("token_created_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    CheckConstraint("quota >= 0", name="quota_not_negative"),
    CheckConstraint("role IN ('user', 'admin')", name="role_known"),
    CheckConstraint("status IN ('enabled', 'disabled')", name="status_known"),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("quota", BigInteger, nullable=False),
    Column("note", String(200), nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    CheckConstraint("quota > 0", name="grant_positive"),
    Index("grants_user", "user_id"),
)

usage = Table(
    "usage",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("quota", BigInteger, nullable=False),
    # The balance right after this charge, so that a replay returns the first answer.
    Column("quota_after", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("user_id", "request_id", name="usage_request_once"),
    CheckConstraint("quota >= 0", name="usage_not_negative"),
    Index("usage_user_newest", "user_id", "id"),
)

prices = Table(
    "prices",
    metadata,
    Column("model", String(128), primary_key=True),
    # Decimal strings (exact); exactly one of: per call, or per million tokens in and out.
    Column("per_call_usd", String(40), nullable=True),
    Column("input_usd_per_mtok", String(40), nullable=True),
    Column("output_usd_per_mtok", String(40), nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

groups = Table(
    "groups",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("ratio", String(40), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    # SHA-256 of the cookie value: a stolen database does not yield live sessions.
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("csrf_hash", String(64), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("sessions_user", "user_id"),
)
