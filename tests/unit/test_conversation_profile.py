"""
The visitor's profile (issue 22, item 3): its fields checked at their
bounds, a token's claims read leniently, the merge rule (a token's fields
stand against identify), its stored form, and the core's L{Identify} event
and a profile brought by the visitor's first message.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conversation_desk import ROUTE, Desk, cid
from wsdaemon.conversations import (
    Commit,
    Identify,
    NotifyOperators,
    Profile,
    ProfileError,
    ProfileSource,
    VisitorMessage,
)
from wsdaemon.conversations.codec import conversation_from_row, conversation_row
from wsdaemon.conversations.profile import (
    MAX_ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_VALUE_CHARS,
    MAX_ATTRIBUTES,
    MAX_ATTRIBUTES_CHARS,
    MAX_EMAIL_CHARS,
    MAX_NAME_CHARS,
    checked_profile,
    merged,
    profile_from_claims,
    profile_from_json,
    profile_json,
)

JWT, IDENTIFY = ProfileSource.JWT, ProfileSource.IDENTIFY


def test_fields_are_checked_and_kept() -> None:
    """Name and email are trimmed; attributes keep their order; numbers and
    booleans become their JSON text."""
    profile = checked_profile("  Ann Lee ", "ann@example.com ",
                              {"plan": "pro", "seats": 12, "trial": False, "score": 1.5})
    assert profile == Profile("Ann Lee", "ann@example.com",
                              (("plan", "pro"), ("seats", "12"), ("trial", "false"),
                               ("score", "1.5")), IDENTIFY)
    assert checked_profile(None, None, None).empty


def test_bounds_hold_at_their_limit() -> None:
    """Each bound takes its limit and refuses one more, saying what was expected."""
    assert checked_profile("n" * MAX_NAME_CHARS, None, None).name == "n" * MAX_NAME_CHARS
    with pytest.raises(ProfileError, match=f"name: expected a string of 1 to {MAX_NAME_CHARS}"):
        checked_profile("n" * (MAX_NAME_CHARS + 1), None, None)
    email = "a" * (MAX_EMAIL_CHARS - len("@example.com")) + "@example.com"
    assert checked_profile(None, email, None).email == email
    with pytest.raises(ProfileError, match="email"):
        checked_profile(None, "a" + email, None)
    many = {f"k{n}": "v" for n in range(MAX_ATTRIBUTES)}
    assert len(checked_profile(None, None, many).attributes) == MAX_ATTRIBUTES
    with pytest.raises(ProfileError, match=f"attributes: at most {MAX_ATTRIBUTES}"):
        checked_profile(None, None, {**many, "one": "more"})
    key = "k" * MAX_ATTRIBUTE_KEY_CHARS
    assert checked_profile(None, None, {key: "v"}).attributes == ((key, "v"),)
    with pytest.raises(ProfileError, match="names of 1 to"):
        checked_profile(None, None, {key + "k": "v"})
    value = "v" * MAX_ATTRIBUTE_VALUE_CHARS
    assert checked_profile(None, None, {"k": value}).attributes == (("k", value),)
    with pytest.raises(ProfileError, match=f"at most {MAX_ATTRIBUTE_VALUE_CHARS} characters"):
        checked_profile(None, None, {"k": value + "v"})
    # Together: 8 values of 500 and 1-character keys fill 4008 characters.
    big = {f"{n}": "v" * 500 for n in range(8)}
    assert sum(len(k) + len(v) for k, v in checked_profile(None, None, big).attributes) \
        <= MAX_ATTRIBUTES_CHARS
    with pytest.raises(ProfileError, match=f"at most {MAX_ATTRIBUTES_CHARS} characters"):
        checked_profile(None, None, {**big, "x": "v" * 100})


@pytest.mark.parametrize(("name", "email", "attributes", "error"), [
    ("", None, None, "name"),
    ("Ann\x1b[31m", None, None, "control characters"),
    (7, None, None, "name"),
    (None, "not an email", None, "email"),
    (None, "ann@example.com\nBcc: x@example.com", None, "email"),
    (None, None, ["a"], "attributes: expected an object"),
    (None, None, {"bad key": "v"}, "names of"),
    (None, None, {"k": {"nested": 1}}, "attributes.k: expected a string"),
    (None, None, {"k": float("nan")}, "finite"),
    (None, None, {"k": "\ud800"}, "lone surrogate"),
])
def test_wrong_fields_are_refused(name: Any, email: Any, attributes: Any, error: str) -> None:
    """A field of the wrong kind is refused, naming it."""
    with pytest.raises(ProfileError, match=error):
        checked_profile(name, email, attributes)


def test_claims_are_read_leniently() -> None:
    """A token's name and email (and the route's attributes claim) make a
    jwt profile; a bad claim is left out, the rest kept; no claims, no profile."""
    profile, problems = profile_from_claims(
        {"sub": "u1", "name": "Ann", "email": "x" * 300, "ctx": {"plan": "pro"}}, "ctx")
    assert profile == Profile("Ann", None, (("plan", "pro"),), JWT)
    assert problems and problems[0].startswith("email")
    assert profile_from_claims({"sub": "u1", "ctx": {"plan": "pro"}}) == (None, ())
    assert profile_from_claims({"sub": "u1", "name": "Ann"})[0] == Profile("Ann", source=JWT)


def test_a_token_stands_against_identify() -> None:
    """identify fills what a token left empty and never changes what it gave;
    a token sets every field it gives; the same again changes nothing."""
    token = Profile("Ann", None, (("plan", "pro"),), JWT)
    claimed = Profile("Mallory", "m@example.com", (("plan", "free"), ("page", "/buy")), IDENTIFY)
    both = merged(token, claimed)
    assert both == Profile("Ann", "m@example.com", (("plan", "pro"), ("page", "/buy")), JWT)
    assert merged(both, claimed) is both
    assert merged(both, token) is both
    again = merged(both, Profile("Ann Lee", None, (), JWT))
    assert again.name == "Ann Lee" and again.email == "m@example.com"
    assert merged(None, claimed) is claimed
    newer = Profile("Bob", None, (("page", "/home"),), IDENTIFY)
    assert merged(claimed, newer) == Profile(
        "Bob", "m@example.com", (("page", "/home"), ("plan", "free")), IDENTIFY)


def test_merging_stays_within_bounds() -> None:
    """Attributes of two full profiles merge to at most the bound, the stronger's first."""
    token = Profile(attributes=tuple((f"t{n}", "v") for n in range(MAX_ATTRIBUTES)), source=JWT)
    claimed = Profile(attributes=(("extra", "v"),))
    assert merged(token, claimed) is token
    large = Profile(attributes=tuple((f"k{n}", "v" * 500) for n in range(8)))
    grown = merged(large, Profile(attributes=(("x", "v" * 200),), source=JWT))
    assert sum(len(k) + len(v) for k, v in grown.attributes) <= MAX_ATTRIBUTES_CHARS
    assert grown.attributes[0] == ("x", "v" * 200)


def test_stored_form_round_trips() -> None:
    """The stored JSON gives the same profile back; no profile is NULL."""
    profile = Profile('Ann "A" \\ </b>\x00', "ann@example.com", (("k", "é\n\U0001f600"),), JWT)
    assert profile_from_json(profile_json(profile)) == profile
    assert profile_json(None) is None and profile_from_json(None) is None


def test_identify_keeps_the_profile_on_the_conversation() -> None:
    """Identify commits the merged profile and tells operators; without a
    conversation, or with nothing new, it changes nothing (no commit)."""
    desk = Desk(fallback_after=0)
    ann = Profile("Ann", "ann@example.com", (("plan", "pro"),))
    assert desk.step(Identify(ROUTE, "v1", ann)).effects == ()
    desk.step(VisitorMessage(ROUTE, "v1", "hi"))
    assert desk.conversation("v1").profile is None
    transition = desk.step(Identify(ROUTE, "v1", ann))
    assert isinstance(transition.effects[0], Commit)
    assert transition.effects[0].conversations[0].profile == ann
    assert [e.kind for e in desk.effects(NotifyOperators)] == ["updated"]
    assert desk.conversation("v1").profile == ann
    assert desk.step(Identify(ROUTE, "v1", ann)).effects == ()
    token = Profile("Ann Lee", None, (), JWT)
    desk.step(Identify(ROUTE, "v1", token))
    assert desk.conversation("v1").profile == Profile("Ann Lee", "ann@example.com",
                                                      (("plan", "pro"),), JWT)
    desk.step(Identify(ROUTE, "v1", Profile("Mallory")))
    assert desk.conversation("v1").profile.name == "Ann Lee"


def test_a_first_message_brings_the_profile() -> None:
    """A visitor who identified before writing: its first message stores the
    profile with the conversation; later messages with the same change nothing."""
    desk = Desk(fallback_after=0)
    ann = Profile("Ann", None, (), JWT)
    desk.step(VisitorMessage(ROUTE, "v1", "hi", profile=ann))
    assert desk.conversation("v1").profile == ann
    before = desk.conversation("v1").profile
    desk.step(VisitorMessage(ROUTE, "v1", "again", profile=ann))
    assert desk.conversation("v1").profile is before
    row = conversation_row(desk.conversation("v1"))
    assert conversation_from_row(row).profile == ann
    assert cid("v1") == desk.conversation("v1").conversation_id


_texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
                 min_size=1, max_size=40).filter(str.strip)
_keys = st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True)
_profiles = st.builds(
    lambda name, email, attributes, source: checked_profile(name, email, attributes, source),
    st.none() | _texts, st.none() | st.just("ann@example.com") | st.just("bo@example.org"),
    st.dictionaries(_keys, _texts, max_size=MAX_ATTRIBUTES), st.sampled_from(ProfileSource))


@given(st.lists(_profiles, min_size=1, max_size=6))
def test_merging_any_sequence_keeps_the_rules(sequence: list[Profile]) -> None:
    """Whatever arrives in whatever order: the bounds hold, the same profile
    again changes nothing, and once a token gave a field no identify
    changes it."""
    current: Profile | None = None
    for new in sequence:
        before = current
        current = merged(current, new)
        assert len(current.attributes) <= MAX_ATTRIBUTES
        assert sum(len(k) + len(v) for k, v in current.attributes) <= MAX_ATTRIBUTES_CHARS
        assert len({k for k, _ in current.attributes}) == len(current.attributes)
        assert merged(current, new) is current
        if before is not None and before.source is JWT and new.source is IDENTIFY:
            for field in ("name", "email"):
                if getattr(before, field) is not None:
                    assert getattr(current, field) == getattr(before, field)
            given_by_token = dict(before.attributes)
            assert all(dict(current.attributes).get(k) == v for k, v in given_by_token.items())
        if new.source is JWT:
            assert current.source is JWT
            assert all(dict(current.attributes)[k] == v for k, v in new.attributes)
