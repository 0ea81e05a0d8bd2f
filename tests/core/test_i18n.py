"""The message catalogs: complete, placeholders intact, plurals right, English as the fallback.

No Discord here: ``videobot.i18n`` is the core's; the command tree's translator is tested in
``tests/bot/test_i18n_bot.py`` and end to end in ``tests/moderation/test_i18n_e2e.py``.
"""

from __future__ import annotations

import re

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot import catalogs
from videobot import i18n
from videobot.errors import QuotaExceeded
from videobot.guilds import PROMPT_REJECTED_MESSAGE, GuildSettingsView, check_request
from videobot.i18n import Duration, Number, join, msg, nmsg, t, tn
from videobot.jobs.records import CANCEL_MESSAGE, crash_message, expired_message

TRANSLATED = [lang for lang in i18n.LANGUAGES if lang != i18n.SOURCE]
#: Product words that a translation must keep as they are (commands are typed in English everywhere;
#: option names such as ``job:`` are shown in the member's language, see below).
KEPT = re.compile(
    r"/(?:video|queue|cancel|quota show|videoconfig show)\b|\*\*|`\(a\+\)\+`|`\\w\+\\w\+`|#\{job\}"
)


def load(lang: str) -> Catalog:
    with i18n.po_path(lang).open("rb") as f:
        return read_po(f, locale=lang, domain=i18n.DOMAIN)


@pytest.fixture(scope="module")
def template() -> Catalog:
    return catalogs.template()


def ids(catalog: Catalog) -> set[str]:
    return {
        (f"{m.context}|" if m.context else "") + (m.id if isinstance(m.id, str) else m.id[0])
        for m in catalog
        if m.id
    }


# ---------------------------------------------------------------------------------------- catalogs
def test_the_committed_template_lists_every_message_the_code_uses(template: Catalog) -> None:
    with catalogs.POT_PATH.open("rb") as f:
        committed = read_po(f)
    missing, stale = ids(template) - ids(committed), ids(committed) - ids(template)
    assert not missing and not stale, (
        f"run `.venv/bin/python -m bot.catalogs` and translate: new {sorted(missing)}, gone {sorted(stale)}"
    )
    assert len(ids(template)) > 100  # the extraction really found the code's messages


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_message_is_translated_with_the_same_placeholders(lang: str, template: Catalog) -> None:
    catalog = load(lang)
    assert ids(catalog) >= ids(template), f"{lang} lacks {sorted(ids(template) - ids(catalog))}"
    assert catalog.num_plurals == {"ja": 1, "de": 2}.get(lang, 3), "the CLDR plural rule of the language"
    for source in template:
        if not source.id:
            continue
        entry = catalog.get(source.id, context=source.context)
        assert entry is not None and not entry.fuzzy, (lang, source.id)
        if source.pluralizable:
            english = source.id[1]
            forms = list(entry.string)
            assert len(forms) == catalog.num_plurals, (lang, source.id)
        else:
            english, forms = source.id, [entry.string]
        for form in forms:
            assert form and form.strip(), f"{lang}: {english!r} untranslated"
            assert i18n.placeholders(form) == i18n.placeholders(english), (lang, english, form)
            assert sorted(KEPT.findall(form)) == sorted(KEPT.findall(english)), (
                f"{lang}: commands, code, bold and mentions must stay as in English: {english!r} -> {form!r}"
            )


@pytest.mark.parametrize("lang", TRANSLATED)
def test_a_text_that_names_an_option_names_it_as_discord_shows_it_in_that_language(lang: str) -> None:
    """``/cancel job:<number>`` in Italian is ``/cancel lavoro:<numero>``: the name the member sees."""
    job = i18n.lookup(lang, "job", i18n.OPTION_NAME)
    assert job, f"{lang} has no name for the option job"
    hint = i18n.t(lang, "Cancel one with `/cancel job:<number>` (your credit is refunded).")
    assert f"`/cancel {job}:" in hint


@pytest.mark.parametrize("lang", TRANSLATED)
def test_no_catalog_is_compiled_to_a_file_that_could_go_stale(lang: str) -> None:
    assert not list(i18n.LOCALE_DIR.rglob("*.mo"))
    assert i18n.translations(lang).gettext("Your video credits") != "Your video credits"


# ---------------------------------------------------------------------------------------- locales
@pytest.mark.parametrize(
    ("locale", "lang"),
    [
        ("it", "it"),
        ("es-ES", "es"),
        ("es-419", "es"),
        ("pt-BR", "pt_BR"),
        ("pt-PT", "pt_BR"),
        ("fr", "fr"),
        ("de", "de"),
        ("ja", "ja"),
        ("en-US", "en"),
        ("en-GB", "en"),
        ("ko", "en"),
        ("zh-TW", "en"),
        ("", "en"),
        (None, "en"),
        ("pt_BR", "pt_BR"),
    ],
)
def test_discord_locales_map_onto_the_catalogs(locale: str | None, lang: str) -> None:
    assert i18n.language(locale) == lang


def test_each_catalog_lists_discords_own_locale_codes() -> None:
    codes = [c for lang in TRANSLATED for c in i18n.DISCORD_LOCALES[lang]]
    assert sorted(codes) == sorted(["it", "es-ES", "es-419", "fr", "de", "pt-BR", "ja"])
    assert i18n.DISCORD_LOCALES["en"] == ("en-US", "en-GB")
    assert all(i18n.language(c) == lang for lang, cs in i18n.DISCORD_LOCALES.items() for c in cs)


# ---------------------------------------------------------------------------------------- messages
def test_a_message_in_each_language_and_english_for_the_rest() -> None:
    assert t("it", "Your video credits") == "I tuoi crediti video"
    assert t("ja", "Your video credits") == "あなたの動画クレジット"
    assert t("pt-BR", "Your video credits") == "Seus créditos de vídeo"
    assert t("ko", "Your video credits") == "Your video credits"
    assert t("en-GB", "Reason: {reason}", reason="spam") == "Reason: spam"


def test_a_missing_translation_falls_back_to_the_english_text_never_a_key() -> None:
    assert t("it", "A sentence no catalog has, {who}.", who="Ada") == "A sentence no catalog has, Ada."
    assert i18n.lookup("it", "A sentence no catalog has.") is None


def test_a_broken_translation_falls_back_to_english(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def gettext(self, message: str) -> str:
            return "Motivo: {ragione}"  # a translator renamed the placeholder

    monkeypatch.setattr(i18n, "translations", lambda lang: Broken())
    assert t("it", "Reason: {reason}", reason="spam") == "Reason: spam"


@pytest.mark.parametrize(
    ("locale", "n", "expected"),
    [
        ("it", 1, "1 video in attesa nella coda."),
        ("it", 2, "2 video in attesa nella coda."),
        ("fr", 0, "0 vidéo en attente dans la file."),  # French counts 0 as singular
        ("fr", 2, "2 vidéos en attente dans la file."),
        ("de", 1, "1 Video wartet in der Warteschlange."),
        ("de", 1500, "1.500 Videos warten in der Warteschlange."),
        ("ja", 3, "キューで待機中の動画：3 本"),
        ("en-US", 1, "1 video waiting in the queue."),
        ("en-US", 1234, "1,234 videos waiting in the queue."),
    ],
)
def test_plurals_and_numbers_follow_the_language(locale: str, n: int, expected: str) -> None:
    assert tn(locale, "{n} video waiting in the queue.", "{n} videos waiting in the queue.", n) == expected


@pytest.mark.parametrize(
    ("locale", "seconds", "expected"),
    [
        ("en-US", 3 * 3600 + 20 * 60, "3 hr 20 min"),
        ("it", 3 * 3600 + 20 * 60, "3 h 20 min"),
        ("de", 3 * 3600 + 20 * 60, "3 Std., 20 Min."),
        ("ja", 3 * 3600 + 20 * 60, "3 時間20 分"),
        ("fr", 2 * 86400 + 4 * 3600, "2\u202fj 4\u202fh"),  # narrow no-break spaces
        ("en-US", 45, "45 sec"),
        ("en-US", 3600, "1 hr"),
        ("en-US", 0.2, "0 sec"),
        ("ko", 3600, "1 hr"),  # English messages, English formats
    ],
)
def test_durations_in_the_readers_locale(locale: str, seconds: float, expected: str) -> None:
    assert i18n.format_duration(locale, seconds) == expected


def test_numbers_use_the_exact_locale() -> None:
    assert i18n.format_number("de", 12345.5) == "12.345,5"
    assert i18n.format_number("fr", 12345) == "12\u202f345"
    assert i18n.format_number("en-GB", 12345) == "12,345"
    assert i18n.discord_timestamp(1_700_000_000.7) == "<t:1700000000:R>"


def test_messages_rendered_later_in_the_readers_language() -> None:
    m = join(
        nmsg("This video costs {n} credit.", "This video costs {n} credits.", 2),
        msg("Your next credit comes back {when}.", when=i18n.discord_timestamp(100)),
    )
    assert str(m) == "This video costs 2 credits. Your next credit comes back <t:100:R>."
    assert m.render("es-419") == "Este vídeo cuesta 2 créditos. Tu próximo crédito vuelve <t:100:R>."
    inner = msg("Slow down a little: try again in {wait}.", wait=Duration(90))
    assert inner.render("it") == "Rallenta un po': riprova tra 1 min 30 s."
    assert msg("{n} per member", n=Number(2000)).render("de") == "2.000 pro Mitglied"


def test_domain_errors_keep_english_for_logs_and_render_for_members() -> None:
    view = GuildSettingsView(guild_id=1, blocklist=("fox",))
    with pytest.raises(Exception) as caught:
        check_request(view, 5, "a FOX in the snow")
    err = caught.value
    assert str(err) == err.message == PROMPT_REJECTED_MESSAGE
    assert (
        err.render("fr")
        == "Votre prompt contient un mot que ce serveur n'autorise pas. Merci de le reformuler."
    )
    view = GuildSettingsView(guild_id=1, allowed_channel_ids=(7, 8))
    with pytest.raises(Exception) as caught:
        check_request(view, 5, "a fox")
    assert (
        caught.value.render("ja") == "このチャンネルでは動画を作成できません。<#7>, <#8> を使ってください。"
    )
    quota = QuotaExceeded(nmsg("This video costs {n} credit.", "This video costs {n} credits.", 3))
    assert (
        quota.render("pt-BR") == "Este vídeo custa 3 créditos."
        and quota.message == "This video costs 3 credits."
    )


def test_job_notices_are_rebuilt_in_any_language() -> None:
    assert str(expired_message(3600)).startswith("This video waited more than 60 minutes in the queue")
    assert "più di 24 ore" in expired_message(24 * 3600).render("it")
    assert str(crash_message(1)).startswith("This video could not be made: the generator stopped 1 time ")
    assert "3 volte" in crash_message(3).render("it")
    assert msg(CANCEL_MESSAGE).render("de") == "Das Video wurde abgebrochen. Dein Credit wurde erstattet."
