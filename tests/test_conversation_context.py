import pytest

from bot.conversation import Context, resolve_context
from bot.settings import Settings

SCHOOLS = ("linden-lodge", "model-policy", "lunsford", "scotts", "lseat")


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.delenv("SCHOOLGUIDE_DEFAULT_SCHOOL", raising=False)
    monkeypatch.delenv("SCHOOLGUIDE_DEFAULT_AUDIENCE", raising=False)
    return Settings.from_env()


def test_metadata_sets_school_and_audience(settings):
    ctx = resolve_context(settings, SCHOOLS, {"school": "scotts", "audience": "pupil"})
    assert ctx == Context("scotts", "pupil")


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        "lunsford",
        42,
        [],
        {},
        {"school": None, "audience": None},
        {"school": 7, "audience": ["staff"]},
        {"school": "hogwarts", "audience": "headteacher"},
        {"school": "<script>alert(1)</script>", "audience": "x" * 100_000},
        {"school": "LUNSFORD\u200b", "audience": "Staff"},
    ],
)
def test_bad_metadata_falls_back_to_defaults(settings, metadata):
    ctx = resolve_context(settings, SCHOOLS, metadata)
    assert ctx.school in SCHOOLS
    assert ctx.audience in ("staff", "parent", "pupil")
    if not (isinstance(metadata, dict) and metadata.get("audience") == "Staff"):
        assert ctx == Context("lunsford", "parent")


def test_case_and_space_are_forgiven(settings):
    assert resolve_context(settings, SCHOOLS, {"school": " Scotts ", "audience": "STAFF"}) == Context(
        "scotts", "staff"
    )


def test_later_sources_fill_what_earlier_ones_lack(settings):
    ctx = resolve_context(settings, SCHOOLS, {"audience": "staff"}, {"school": "lseat", "audience": "pupil"})
    assert ctx == Context("lseat", "staff")


def test_unknown_default_school_still_gives_a_real_school(monkeypatch):
    monkeypatch.setenv("SCHOOLGUIDE_DEFAULT_SCHOOL", "nowhere")
    ctx = resolve_context(Settings.from_env(), SCHOOLS, None)
    assert ctx.school in SCHOOLS
