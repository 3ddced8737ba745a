"""System tokens: format, checksum, storage form."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from quotaledger import tokens

ALPHABET = string.digits + string.ascii_letters


def test_a_new_token_has_the_documented_shape() -> None:
    token = tokens.generate_token()

    assert token.startswith("ql_")
    assert len(token) == tokens.TOKEN_LENGTH == 41
    assert tokens.is_well_formed(token)


def test_tokens_do_not_repeat() -> None:
    assert len({tokens.generate_token() for _ in range(1000)}) == 1000


@given(position=st.integers(min_value=3, max_value=40), replacement=st.sampled_from(ALPHABET))
def test_any_single_mistyped_character_is_caught_offline(position: int, replacement: str) -> None:
    token = tokens.generate_token()
    typo = token[:position] + replacement + token[position + 1 :]

    assert tokens.is_well_formed(typo) == (typo == token)


@given(cut=st.integers(min_value=0, max_value=40))
def test_a_truncated_token_is_malformed(cut: int) -> None:
    assert not tokens.is_well_formed(tokens.generate_token()[:cut])


def test_only_the_digest_and_a_short_hint_are_kept() -> None:
    token = tokens.generate_token()

    assert len(tokens.hash_token(token)) == 64
    assert token not in tokens.hash_token(token)
    assert tokens.token_hint(token) == "…" + token[-4:]
