"""What a channel of one wire format needs, in one object: where its calls go, how it is
authenticated, which headers it takes, what it serves as received, what its cache prices
default to, the field its output cap goes in, and its cheapest call (`channel test`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import quote

Headers = tuple[tuple[str, str], ...]

# The relay's operations, named after the client endpoints (`server/relay.py`).
CHAT = "chat"
EMBEDDINGS = "embeddings"
RESPONSES = "responses"
MESSAGES = "messages"
COUNT_TOKENS = "count_tokens"
GEMINI = "gemini"  # generateContent and streamGenerateContent
GEMINI_COUNT = "gemini_count"  # countTokens
GEMINI_EMBED = "gemini_embed"  # embedContent
GEMINI_BATCH_EMBED = "gemini_embeds"  # batchEmbedContents (google-genai's embed_content)
MODELS = "models"

# The input price's own rate for each cache class (read, 5-minute write, 1-hour write): what
# an unset cache price defaults to.
FULL_PRICE = (Fraction(1), Fraction(1), Fraction(1))


@dataclass(frozen=True)
class Probe:
    """The cheapest call that tells whether a channel answers: its operation and body."""

    operation: str
    body: Callable[[str], dict[str, Any]]  # (upstream model) -> body


@dataclass(frozen=True)
class Provider:
    name: str  # the channel format, as `channel add --format` takes it
    native: frozenset[str]  # the operations served as the client sent them
    # The operation's path under the channel's base URL; `{model}` is the upstream model.
    paths: Mapping[str, str]
    # The path a base URL given without one gets (`https://api.openai.com` -> `.../v1`).
    default_path: str
    auth: Callable[[str], Headers]  # the channel's own key -> its credential headers
    probe: Probe
    # The client headers passed on to this provider (everything else stays here), and the
    # ones sent when the client named none.
    forwarded_headers: frozenset[str] = frozenset()
    default_headers: Headers = ()
    cache_ratios: tuple[Fraction, Fraction, Fraction] = FULL_PRICE
    # The converted requests' operation: the one a request of another format is sent as.
    converted_operation: str = CHAT
    default_base_url: str | None = None
    # Where a streamed call of an operation goes, when not where the whole one does.
    stream_paths: Mapping[str, str] = field(default_factory=dict)

    def serves_natively(self, operation: str) -> bool:
        return operation in self.native

    def url(self, base_url: str, operation: str, model: str = "", *, stream: bool = False) -> str:
        """The upstream URL of `operation` on a channel rooted at `base_url` (normalised by
        `channels.normalise_base_url`). Never the client's query string: a channel's own
        parameters are the channel's (SPEC §11)."""
        path = (stream and self.stream_paths.get(operation)) or self.paths[operation]
        return base_url + path.replace("{model}", quote(model, safe=""))

    def headers(self, client_headers: Mapping[str, str]) -> list[tuple[str, str]]:
        """The client's headers this provider takes, and its defaults for the others."""
        sent = [(k, v) for k, v in client_headers.items() if k in self.forwarded_headers]
        named = {k for k, _ in sent}
        sent += [(k, v) for k, v in self.default_headers if k not in named]
        return sent
