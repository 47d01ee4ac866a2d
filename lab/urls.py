"""URLs from the environment, checked before anything uses them.

Every server the lab talks to may be named by a URL in an environment
variable: LAB_MYSQL_URL, LAB_RESULTS (a mysql:// store), LAB_REDIS_URL,
LAB_AMQP_URL, LAB_MQTT_URL, LAB_NATS_URL, LAB_XMPP_URL. urllib.parse.urlsplit
lets through what no server can be reached by, and raises plain ValueErrors
(a traceback at the CLI) on the rest:

    mysql://root@[::1/test      ValueError: Invalid IPv6 URL (from urlsplit)
    redis://h:99999/0           ValueError: Port out of range (from .port)
    mysql://root@h\\x00:3306/t   a host with a NUL in it, accepted
    mysql://root@h:3306/%ff     a database named '\\ufffd' (unquote replaces)

split() is urlsplit with those refused in one line (a LabError) that names
the variable and what is wrong and never repeats the URL, which may hold a
password; decode() is unquote that refuses instead of guessing.
"""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

from lab.errors import LabError

__all__ = ["decode", "split"]


def _bad(name: str, form: str, what: str) -> LabError:
    return LabError(f"{name} is not {form}: {what}")


def split(url: str, name: str, form: str, schemes: tuple[str, ...] = ()) -> SplitResult:
    """urlsplit(url) with its host and port readable, or a LabError naming `name`
    (the variable) and `form` (what the URL should look like). `schemes`: the ones
    allowed (any when empty), checked first: text that is no URL at all says so."""
    text = url.strip()
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if schemes and scheme not in schemes:
        shown = scheme if scheme.isascii() and scheme.isalnum() else ""
        raise _bad(name, form, f"scheme is {shown or 'missing'!r}, expected {schemes[0]!r}")
    if not text.isascii():  # also the surrogates os.environ makes of bytes that are not UTF-8
        raise _bad(name, form, "it holds characters that are not ASCII: %-encode them")
    if any(not c.isprintable() for c in text):  # NUL, newlines, a terminal's escapes
        raise _bad(name, form, "it holds a control character (a NUL, a newline...)")
    if any(c.isspace() for c in text):
        raise _bad(name, form, "it holds a space")
    try:
        parts = urlsplit(text)
        parts.hostname  # noqa: B018 - raises on unbalanced [brackets]
    except ValueError:
        raise _bad(name, form, "its host cannot be read (a [bracket] not closed?)") from None
    try:
        port = parts.port  # raises above 65535 or on anything but digits
    except ValueError:
        port = 0
    if port == 0:
        raise _bad(name, form, "the port is not a number from 1 to 65535")
    if parts.fragment or text.endswith("#"):
        raise _bad(name, form, "a #fragment means nothing here")
    return parts


def decode(part: str, name: str, form: str, what: str) -> str:
    """unquote(part), refusing a %-escape that is not UTF-8 or that decodes to a NUL or
    another control character (`what` names the part: user, password, database)."""
    try:
        text = unquote(part, errors="strict")
    except UnicodeDecodeError:
        raise _bad(name, form, f"the {what} holds a %-escape that is not UTF-8") from None
    if any(not c.isprintable() and c != " " for c in text):
        raise _bad(name, form, f"the {what} holds a control character once decoded")
    return text
