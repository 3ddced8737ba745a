"""The schema, in SQLAlchemy Core. Migrations in `migrations/versions/` create it; this
module is what the code queries. Quota columns are 64-bit (new-api's 32-bit column caps a
balance near $4,295)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    false,
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
    # Rate limits (SPEC §12, migration 0008): NULL is no limit of this kind.
    Column("rpm", Integer, nullable=True),
    Column("tpm", BigInteger, nullable=True),
    Column("concurrency", Integer, nullable=True),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("quota", BigInteger, nullable=False),
    Column("note", String(200), nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    # A deduction by an admin is a negative grant with its reason (migration 0006).
    CheckConstraint("quota <> 0", name="grant_not_zero"),
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


# ------------------------------------------------------------------ the relay (SPEC §8)
# Added by migration 0002. Relay columns of existing tables are nullable or defaulted, so the
# admin charge path (`ledger.charge_in`) and the rows it wrote keep working unchanged.

for _price_column in (
    # Cache prices (SPEC §8a), USD per million tokens as exact decimal strings; NULL means
    # the default ratio of the input price (`pricing.TokenPrices`).
    Column("cache_read_usd_per_mtok", String(40), nullable=True),
    Column("cache_write_usd_per_mtok", String(40), nullable=True),
    Column("cache_write_1h_usd_per_mtok", String(40), nullable=True),
):
    prices.append_column(_price_column)

for _usage_column in (
    # The relay's log row (SPEC §8 "Logs and metrics"). `prompt_tokens` counts every input
    # token, cached ones included; the cache classes are broken out here.
    Column("key_id", BigInteger, nullable=True),
    Column("key_name", String(64), nullable=True),
    Column("upstream_model", String(128), nullable=True),
    Column("channel", String(64), nullable=True),
    Column("is_stream", Boolean, nullable=True),
    Column("cached_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_1h_tokens", BigInteger, nullable=False, server_default="0"),
    Column("quota_reserved", BigInteger, nullable=False, server_default="0"),
    Column("written_off", BigInteger, nullable=False, server_default="0"),
    Column("usage_source", String(16), nullable=True),
    Column("end_reason", String(32), nullable=True),
    # The HTTP status the client got; the admin charge path leaves the default (a charge
    # is a 200). A row counts as a request (`request_count`) only when this is 2xx.
    Column("status", Integer, nullable=True, server_default="200"),
    Column("latency_ms", BigInteger, nullable=True),
    Column("ttft_ms", BigInteger, nullable=True),
    Column("session_id", String(128), nullable=True),
):
    usage.append_column(_usage_column)
Index("usage_key_newest", usage.c.key_id, usage.c.id)

for _usage_column in (
    # Migration 0005 (SPEC §11): the client's and the channel's wire formats, and what a
    # conversion between them could not carry (named fields, comma-separated).
    Column("client_format", String(16), nullable=True),
    Column("channel_format", String(16), nullable=True),
    Column("dropped_fields", String(512), nullable=True),
):
    usage.append_column(_usage_column)

_caps_column: Column[int] | Column[str]
for _caps_column in (
    # Migration 0007 (SPEC §8b): the model's maximum output, a long-context tier (a prompt
    # threshold and the tier's own prices) and web search per 1,000 calls.
    Column("max_output_tokens", BigInteger, nullable=True),
    Column("long_context_threshold", BigInteger, nullable=True),
    Column("long_input_usd_per_mtok", String(40), nullable=True),
    Column("long_output_usd_per_mtok", String(40), nullable=True),
    Column("long_cache_read_usd_per_mtok", String(40), nullable=True),
    Column("long_cache_write_usd_per_mtok", String(40), nullable=True),
    Column("long_cache_write_1h_usd_per_mtok", String(40), nullable=True),
    Column("web_search_usd_per_kcall", String(40), nullable=True),
):
    prices.append_column(_caps_column)

for _caps_column in (
    # Migration 0007 (SPEC §8b): why the usage charged is not the one reported (NULL: it
    # is, or there was none), the web searches charged, and the price tier ("long").
    Column("usage_note", String(64), nullable=True),
    Column("web_search_calls", BigInteger, nullable=False, server_default="0"),
    Column("price_tier", String(16), nullable=True),
):
    usage.append_column(_caps_column)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("name", String(64), nullable=False),
    # SHA-256 hex of the key (`sk-ql-...`), and a display hint; the key itself is never kept.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_hint", String(16), nullable=False),
    Column("status", String(16), nullable=False, server_default="enabled"),
    Column("expires_at", BigInteger, nullable=True),  # NULL: never
    # Soft delete: the row stays so that log rows keep its name; a deleted key never admits.
    Column("deleted_at", BigInteger, nullable=True),
    Column("unlimited", Boolean, nullable=False, server_default=false()),
    # A limited key's own budget: granted_quota - used - open reservations == remain_quota.
    Column("remain_quota", BigInteger, nullable=False, server_default="0"),
    Column("granted_quota", BigInteger, nullable=False, server_default="0"),
    Column("used_quota", BigInteger, nullable=False, server_default="0"),
    Column("request_count", BigInteger, nullable=False, server_default="0"),
    Column("models", Text, nullable=True),  # comma-separated; NULL: every offered model
    Column("networks", Text, nullable=True),  # comma-separated CIDRs; NULL: any address
    Column("group", String(64), nullable=True),  # NULL: the user's group
    # Periodic limit: `period_used` counts charges and open reservations since `period_start`
    # (a UTC day or month start); the first reservation of a new period resets it.
    Column("period", String(8), nullable=True),
    Column("period_quota", BigInteger, nullable=True),
    Column("period_used", BigInteger, nullable=False, server_default="0"),
    Column("period_start", BigInteger, nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=True),
    # Rate limits (SPEC §12, migration 0008): NULL is no limit of this kind.
    Column("rpm", Integer, nullable=True),
    Column("tpm", BigInteger, nullable=True),
    Column("concurrency", Integer, nullable=True),
    CheckConstraint("status IN ('enabled', 'disabled')", name="key_status_known"),
    CheckConstraint("remain_quota >= 0", name="key_remain_not_negative"),
    CheckConstraint("period_used >= 0", name="key_period_not_negative"),
    CheckConstraint("period IS NULL OR period IN ('day', 'month')", name="key_period_known"),
    Index("api_keys_user", "user_id"),
)

channels = Table(
    "channels",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("base_url", String(512), nullable=False),
    Column("format", String(16), nullable=False, server_default="openai"),
    Column("models", Text, nullable=False),  # comma-separated
    Column("model_map", Text, nullable=False, server_default="{}"),  # JSON: model -> upstream
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("weight", Integer, nullable=False, server_default="1"),
    Column("status", String(16), nullable=False, server_default="enabled"),
    # The upstream key, Fernet-encrypted with QUOTALEDGER_SECRET_KEY; never stored in clear.
    Column("api_key_encrypted", Text, nullable=False),
    Column("api_key_hint", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # Widened by migration 0005 (SPEC §11); `relay.providers.FORMATS` lists the same names.
    CheckConstraint(
        "format IN ('openai', 'openai-chat', 'anthropic', 'gemini')", name="channel_format_known"
    ),
    CheckConstraint("status IN ('enabled', 'disabled')", name="channel_status_known"),
    CheckConstraint("weight >= 1", name="channel_weight_positive"),
)

reservations = Table(
    "reservations",
    metadata,
    # One open reservation per client request; settling deletes it (exactly once).
    Column("request_id", String(128), primary_key=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("key_id", ForeignKey("api_keys.id"), nullable=False),
    Column("model", String(128), nullable=False),
    Column("price_format", String(16), nullable=False),  # cache price defaults (SPEC §8a)
    Column("group", String(64), nullable=False),  # the pricing group at reservation time
    # `amount` was taken from users.quota, and from the key's remain_quota when
    # `key_funded`, and from its period_used when `period_start` is set.
    Column("amount", BigInteger, nullable=False),
    Column("key_funded", Boolean, nullable=False),
    Column("period_start", BigInteger, nullable=True),
    # Usage counted so far (record_progress), for the sweeper.
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cached_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_1h_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("progress_status", Integer, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # Created, or last reported progress: the sweeper settles rows idle past the TTL, so a
    # long stream that keeps reporting progress is never swept from under its request.
    Column("active_at", BigInteger, nullable=False),
    CheckConstraint("amount >= 0", name="reservation_not_negative"),
    Index("reservations_active", "active_at"),
    Index("reservations_user", "user_id"),
)


# ------------------------------------------------------------------ SPEC §9 (migration 0003)
# The usage log read by time (new-api's log filters and hourly dashboard data).
Index("usage_user_created", usage.c.user_id, usage.c.created_at)

redemptions = Table(
    "redemptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, server_default=""),
    # SHA-256 hex of the code (`qlr-...`), and a display hint; the code itself is never kept.
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("code_hint", String(16), nullable=False),
    Column("quota", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, server_default="enabled"),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),  # NULL: never
    # Set once, by the one guarded UPDATE that redeems the code.
    Column("redeemed_at", BigInteger, nullable=True),
    Column("redeemed_by", ForeignKey("users.id"), nullable=True),
    CheckConstraint("quota > 0", name="redemption_positive"),
    CheckConstraint("status IN ('enabled', 'disabled')", name="redemption_status_known"),
)

# Alerts (SPEC §7's rules on the server): an account's thresholds and its Apprise URLs (one
# Fernet token for the JSON list; a redacted hint of each in clear, for the page).
alert_settings = Table(
    "alert_settings",
    metadata,
    Column("user_id", ForeignKey("users.id"), primary_key=True, autoincrement=False),
    Column("warn_quota", BigInteger, nullable=True),  # NULL: no warning threshold
    Column("critical_quota", BigInteger, nullable=True),
    Column("urls_encrypted", Text, nullable=True),  # NULL: no URL
    Column("url_hints", Text, nullable=False, server_default="[]"),  # JSON list
    Column("updated_at", BigInteger, nullable=False),
)

# Thresholds on a limited key's remaining budget; notifications go to its account's URLs.
key_alerts = Table(
    "key_alerts",
    metadata,
    Column("key_id", ForeignKey("api_keys.id"), primary_key=True, autoincrement=False),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("warn_quota", BigInteger, nullable=True),
    Column("critical_quota", BigInteger, nullable=True),
    Index("key_alerts_user", "user_id"),
)

# What each watched account or key was last found at (`level`, changed only by the one
# conditional UPDATE that claims a crossing) and last told of (`announced`); a message is due
# while they differ, from `retry_at` on (the lease of the instance sending it).
alert_states = Table(
    "alert_states",
    metadata,
    Column("subject", String(32), primary_key=True),  # "account:<id>" or "key:<id>"
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("level", String(16), nullable=False),
    Column("announced", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("retry_at", BigInteger, nullable=True),  # NULL: nothing to send
    Column("changed_at", BigInteger, nullable=False),
    Index("alert_states_retry", "retry_at"),
)

# Rate limits of a group (SPEC §12): defaults for each member account, and with a `model`
# ('' for every model) a limit on each member's use of that model.
group_limits = Table(
    "group_limits",
    metadata,
    Column("group", String(64), primary_key=True),
    Column("model", String(128), primary_key=True, server_default=""),
    Column("rpm", Integer, nullable=True),
    Column("tpm", BigInteger, nullable=True),
    Column("concurrency", Integer, nullable=True),
)

# A channel's health as every instance sees it (`relay.health`): changed only by conditional
# UPDATEs on `version`, so two instances never both apply a transition. No foreign key: a
# deleted channel's row is ignored (channels are joined by id).
channel_health = Table(
    "channel_health",
    metadata,
    Column("channel_id", BigInteger, primary_key=True, autoincrement=False),
    Column("state", String(16), nullable=False, server_default="ok"),  # ok|cooling|disabled
    Column("reason", String(300), nullable=True),
    Column("cause", String(16), nullable=True),  # what disabled it: failure | balance
    Column("until_ms", BigInteger, nullable=False, server_default="0"),  # cooling ends
    Column("level", Integer, nullable=False, server_default="0"),  # backoff exponent
    Column("failures", Text, nullable=False, server_default=""),  # recent failures, ms, comma
    Column("probe_at_ms", BigInteger, nullable=False, server_default="0"),
    Column("last_error", String(300), nullable=True),
    Column("last_error_at", BigInteger, nullable=True),
    Column("last_success_at", BigInteger, nullable=True),
    Column("version", BigInteger, nullable=False, server_default="0"),
)

# Per channel and minute: answered requests by latency bucket (`relay.health.bucket_of`)
# and failures (bucket -1). About 20 rows per busy channel-minute, kept two hours: enough
# for the last hour's success rate and p50 latency on every instance.
channel_minutes = Table(
    "channel_minutes",
    metadata,
    Column("channel_id", BigInteger, primary_key=True, autoincrement=False),
    Column("minute", BigInteger, primary_key=True, autoincrement=False),
    Column("bucket", Integer, primary_key=True, autoincrement=False),
    Column("requests", BigInteger, nullable=False),
)

# The upstream balance of a channel whose provider has a balance API (`relay.balances`),
# with the operator alert's level (claimed by a conditional UPDATE) and what was announced.
channel_balances = Table(
    "channel_balances",
    metadata,
    Column("channel_id", BigInteger, primary_key=True, autoincrement=False),
    Column("provider", String(32), nullable=False),  # a client provider's name
    Column("base_url", String(512), nullable=True),  # NULL: the provider's default site
    Column("alert_usd", String(40), nullable=True),  # NULL: no alert
    Column("disable_at_zero", Boolean, nullable=False, server_default=false()),
    Column("amount", String(40), nullable=True),  # Decimal text; NULL: never read
    Column("currency", String(8), nullable=True),
    Column("checked_at", BigInteger, nullable=True),
    Column("error", String(300), nullable=True),
    Column("level", String(16), nullable=False, server_default="OK"),
    Column("announced", String(16), nullable=False, server_default="OK"),
    Column("next_poll_at", BigInteger, nullable=False, server_default="0"),
)

# The operator console (SPEC §13, migration 0006): every admin action, who, what, when and
# from which address. The actor's name is kept as text: the trail outlives the account.
admin_audit = Table(
    "admin_audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", BigInteger, nullable=False),
    Column("actor_id", BigInteger, nullable=True),
    Column("actor", String(64), nullable=False),
    Column("address", String(64), nullable=False),
    Column("action", String(64), nullable=False),  # "channel.add", "user.grant", ...
    Column("target", String(200), nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default="{}"),  # JSON, never a secret
    Index("admin_audit_created", "created_at"),
)
