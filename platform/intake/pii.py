"""Personal data in free text typed by Chinese and English users: find it, scrub it, mask it.

A pure module (standard library and python-stdnum only), so that intake and the dataset
builds can both call it. Each kind is one compiled pattern plus, where the shape alone is
not enough, a validator:

    PHONE      mainland mobile, 1[3-9]x + 8 digits, optional +86/0086/(+86), 3-4-4 grouping; may be
               glued to a label ("tel13812345678", "wx13812345678", see "Labels" below)
    LANDLINE   area code 010/02x/0xxx + 7-8 digits, with "-", a space or (parentheses); written
               without a separator ("01062345678") only with a real area code, a local number not
               starting with 0/1, and evidence: a phone word just before it or a "转801" extension
    EMAIL      ASCII address; full-width "＠" works through normalisation
    ID         18-character resident ID (also 6-8-4 grouped): stdnum.cn.ric (checksum, birth date,
               region) and not born in the future. Old 15-digit IDs (region + YYMMDD + 3, no
               checksum; also 6-6-3 grouped) only with a province prefix, a real 19YY date, a region
               code that existed while they were issued, and an ID word just before them
    BANK_CARD  13-19 digits (groups of 4 allowed), a card network's prefix and length, stdnum.luhn
    IP         IPv4 / IPv6, validated by `ipaddress`
    SECRET     URLs with user:password@, credential parameters (token=, api_key=, password=...),
               and bare tokens (ghp_/github_pat_, sk-, AKIA/ASIA, xox?-, JWTs)

Normalisation. Matching runs on a copy of the text where every character is NFKC-normalised
on its own (full-width digits, "＠", "（", "：" and the ideographic space become ASCII) and
dash look-alikes become "-". `_normalise` keeps, for each character of the copy, the index of
the original character it came from, so every Finding's start/end are offsets into the
ORIGINAL text. All patterns use ASCII classes only, so a match never runs into the Chinese
characters glued to it ("电话13812345678，" finds just the number).

Digit boundaries. A number must not be part of a longer run: no ASCII letter, digit or "_"
on either side, no "digit." / "x-" before it (decimals, dates, "batch-...") and no ".digit" /
"-x" after it, and no currency sign before it; a phone, card or ID next to "=", "×", "÷"...
is an arithmetic answer. This is what keeps order numbers, timestamps, prices, long math
answers and hashes out. Dotted quads after "第"/"版本"/"version" or before "节"/"条" are
section or version numbers, not IPs.

Labels. The one exception to "no ASCII letter before": a phone number may be glued to a label
that says what it is, as a whole word and case-insensitive, directly or through one "-":
tel/phone/telephone/cellphone/cell/mobile/mob and the WeChat ones wx/vx/weixin/wechat/whatsapp
(a WeChat id is often the phone number); a landline only to tel/phone/telephone/fax. Any other
letters ("order", "id", "sn", "hotel", a hex hash, "user_tel") still make the digits part of a
code, and so does "qq": a QQ number is an account number, not a phone.

Weak shapes need context. 15 digits and 11-12 digits starting with 0 are also common lengths
of order, tracking and invoice numbers, so old IDs and landlines without a separator are only
reported next to a word that names them (`_ID_CONTEXT`, `_LANDLINE_CONTEXT`): it must end at
most 10 characters before the number, with no digit, sentence end or other kind of number
("订单", "单号", "编号", "卡号", "QQ", "order", "tracking"...) in between. The shapes alone
(valid region and date; valid area code) are checked too: a keyword does not make any number
an ID or a phone.

Overlaps. Detectors run independently; `find_pii` then keeps the longest span first and, for
equal lengths, the more specific kind (the order of `_RANK`: SECRET, EMAIL, ID, BANK_CARD,
PHONE, LANDLINE, IP), dropping anything that overlaps a span already kept. So the phone in
"13812345678@163.com" gives way to the EMAIL, an IP inside a credential URL to the SECRET, and
an 18-digit number that is both a valid ID and Luhn-valid is an ID.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stdnum import luhn, numdb
from stdnum.cn import ric

KINDS = ("PHONE", "LANDLINE", "EMAIL", "ID", "BANK_CARD", "IP", "SECRET")
# What each kind is called when people are told about it.
KIND_NAMES = {
    "PHONE": "a mobile number (手机号)", "LANDLINE": "a phone number (电话)", "EMAIL": "an e-mail address (邮箱)",
    "ID": "a resident ID number (身份证号)", "BANK_CARD": "a bank card number (银行卡号)", "IP": "an IP address",
    "SECRET": "a password or access token (密码/令牌)",
}
# Tie-break for overlapping spans of equal length: the first here wins.
_RANK = {kind: i for i, kind in enumerate(("SECRET", "EMAIL", "ID", "BANK_CARD", "PHONE", "LANDLINE", "IP"))}


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int  # offsets into the original text
    end: int
    value: str  # text[start:end] of the original text


# --- normalisation -----------------------------------------------------------------------

_DASHES = dict.fromkeys("‐‑‒–—―−﹣", "-")


@functools.lru_cache(maxsize=4096)
def _norm_char(ch: str) -> str:
    return _DASHES.get(ch) or unicodedata.normalize("NFKC", ch)


def _normalise(text: str) -> tuple[str, list[int] | None]:
    """The matching copy of `text` and, unless it is the text itself, copy index -> original index."""
    if text.isascii():
        return text, None
    parts: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        norm = _norm_char(ch) if ord(ch) > 0x7F else ch
        parts.append(norm)
        origin.extend([i] * len(norm))
    return "".join(parts), origin


# --- patterns ----------------------------------------------------------------------------

# Not inside a longer number, word, decimal, date or price (see the module docstring).
_NUM_BEFORE = r"(?<![0-9A-Za-z_])(?<![0-9]\.)(?<![0-9A-Za-z]-)(?<![¥$€£])"
_NUM_AFTER = r"(?![0-9A-Za-z_])(?!\.[0-9])(?!-[0-9A-Za-z])"
# The same, except that ASCII letters (or letters and "-") may come before: `_label_ok` then
# decides whether they are a label ("tel", "wx") or the start of a code ("order", "abc").
_NUM_BEFORE_LABEL = r"(?<![0-9_])(?<![0-9]\.)(?<![0-9]-)(?<![¥$€£])"
# Each number pattern starts with a look-ahead for the characters it can start with: the same
# matches, but the engine skips most positions before it tries the look-behinds (~1.3x faster).

# Labels a number may be glued to (see "Labels" in the module docstring). "qq" is left out on
# purpose: "qq13812345678" is a QQ account, which the sentence may well mean.
_PHONE_LABELS = frozenset({"tel", "phone", "telephone", "cellphone", "cell", "mobile", "mob",
                           "wx", "vx", "weixin", "wechat", "whatsapp"})
_LANDLINE_LABELS = frozenset({"tel", "phone", "telephone", "fax"})
_LONGEST_LABEL = max(map(len, _PHONE_LABELS | _LANDLINE_LABELS))
_ASCII_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_ASCII_WORD = _ASCII_LETTERS | frozenset("0123456789_")


def _label_ok(norm: str, start: int, labels: frozenset[str]) -> bool:
    """False when ASCII letters touch the number at `start` (directly or through one "-") and
    they are not, as a whole word, one of `labels`."""
    end = start - 1 if norm[start - 1 : start] == "-" else start
    i = end
    while i > 0 and norm[i - 1] in _ASCII_LETTERS and end - i <= _LONGEST_LABEL:
        i -= 1
    if i == end:
        return True  # no letters (digits and "_" are refused by the pattern itself)
    if i > 0 and norm[i - 1] in _ASCII_WORD:
        return False  # a longer word or identifier: "hotel", "mytel", "user_tel", "0xtel"
    return norm[i:end].lower() in labels


# What names an old ID or a glued landline must stand right before it (see the module
# docstring): at most 10 characters between, none a digit, a line or sentence end, or the
# start of another kind of number. "(15位)" may come between an ID word and the number.
_CONTEXT_BREAK = (
    r"订单|单号|编号|工单|流水|卡号|银行卡|信用卡|账号|帐号|快递|快件|包裹|运单|物流|批次|序号|学号|工号|准考证|护照|发票|"
    r"qq|order|tracking|serial|invoice|passport"
)
_CONTEXT_GAP = r"(?:(?:15|十五)位|(?!" + _CONTEXT_BREAK + r")[^0-9。；;!?！？\n]){0,10}\Z"
_ID_CONTEXT = re.compile(
    r"(?:身份证|身份證|身份号码|身份號碼|证件|證件"
    r"|(?<![A-Za-z])(?:id|identity)[ \-]?(?:card|no|number|num|#)(?![A-Za-z])"
    r"|(?<![A-Za-z])(?:national|resident|citizen)[ \-]id(?![A-Za-z]))"
    + _CONTEXT_GAP,
    re.IGNORECASE,
)
_LANDLINE_CONTEXT = re.compile(
    r"(?:电话|電話|座机|固话|联系方式|热线|总机|传真|分机|拨|致电|来电|请打|打给"
    r"|(?<![A-Za-z])(?:tel|phone|telephone|fax|call|landline|office)(?![A-Za-z]))"
    + _CONTEXT_GAP,
    re.IGNORECASE,
)
_CONTEXT_WINDOW = 40  # searched before a number: the longest word (15), a 10-character gap, "(15位)"


def _named(context: re.Pattern[str], norm: str, start: int) -> bool:
    return bool(context.search(norm, max(0, start - _CONTEXT_WINDOW), start))

# Mobile: optional country code, then 1[3-9]x-xxxx-xxxx with optional "-" or " " between groups.
_PHONE = re.compile(
    r"(?=[0-9+(])"
    + _NUM_BEFORE_LABEL
    + r"(?:(?:\+|00)86[ \-]?|\(\+?86\)[ \-]?|86[ \-])?"
    + r"1[3-9][0-9](?:(?:[ \-]?[0-9]{4}){2}|\.[0-9]{4}\.[0-9]{4})"  # dots only as 3.4.4, not a decimal
    + _NUM_AFTER
    + r"(?![ \-][0-9])"  # nor the start of a longer space-grouped number ("1381234 5678 9")
)

# Landline: 010 / 02x (3 digits) or 0[3-9]xx (4 digits) area code, separated from a 7-8 digit
# local number (not starting with 0) by "-", a space, or parentheses; or +86 with
# the leading 0 dropped. An extension "-801" / "转801" may follow.
_LOCAL = r"[1-9][0-9]{2,3}[ \-]?[0-9]{4}"
_AREA = r"(?:0(?:10|2[0-9])|0[3-9][0-9]{2})"
_LANDLINE = re.compile(
    r"(?=[0(+])"
    + _NUM_BEFORE_LABEL
    + r"(?:\(" + _AREA + r"\)[ \-]?|" + _AREA + r"[ \-]|\+86[ \-]?\(?(?:10|2[0-9]|[3-9][0-9]{2})\)?[ \-])"
    + _LOCAL
    + r"(?:(?:-|转)[0-9]{1,5})?"
    + _NUM_AFTER
)
# Landline without a separator: 11-12 digits from a "0", split and checked by `_glued_landline`.
_LANDLINE_GLUED = re.compile(
    r"(?=0)" + _NUM_BEFORE_LABEL + r"(?P<number>0[1-9][0-9]{9,10})(?P<ext>(?:-|转)[0-9]{1,5})?" + _NUM_AFTER
)
# Area codes in use (and 0732/0733, merged into 0731 in 2009), as ranges: 010, 02x without the
# unused 026, and the 03xx-09xx codes of the provinces' cities and prefectures.
_AREA_RANGES = (
    "310-319 335 349-359 370-379 391-398 410-419 421 427 429 431-439 451-459 464 467-469 "
    "470-479 482-483 510-519 523 527 530-539 543 546 550-559 561-566 570-580 591-599 631-635 "
    "660-663 668 691-692 701 710-719 722 724 728 730-739 743-746 750-760 762-763 766 768-769 "
    "770-779 790-799 812-813 816-818 825-827 830-839 851-859 870-879 883 886-888 891-898 "
    "901-903 906 908-909 911-917 919 930-939 941 943 951-955 970-977 979 990-999"
)
_AREA_CODES = frozenset(
    f"{n:04d}"
    for part in _AREA_RANGES.split()
    for lo, _, hi in [part.partition("-")]
    for n in range(int(lo), int(hi or lo) + 1)
) | {"010", *(f"02{d}" for d in "012345789")}


def _glued_landline(number: str) -> bool:
    """010/02x + 8 digits, or a 4-digit area code + 7-8 digits; the local number not from 0 or 1."""
    area = number[:3] if number[1] in "12" else number[:4]
    local = number[len(area) :]
    return area in _AREA_CODES and local[0] not in "01" and (len(local) == 8 or (len(area), len(local)) == (4, 7))


# Email: a common TLD or any two-letter country code, so that code like "x@self.weight" or
# "pkg@1.2.3" is not an address.
_TLDS = (
    "com|net|org|edu|gov|mil|int|info|biz|name|pro|mobi|asia|xyz|top|vip|site|online|shop|club|"
    "tech|dev|app|cloud|email|work|ltd|group|live|store|icu|fun|link|wang|ink|red|art"
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])"
    r"[A-Za-z0-9_%+\-](?:[A-Za-z0-9._%+\-]*[A-Za-z0-9_%+\-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+"
    r"(?:" + _TLDS + r"|[A-Za-z]{2})"
    r"(?![A-Za-z0-9\-])",
    re.IGNORECASE,
)

# Resident ID: region (6) + birth date yyyymmdd + sequence (3) + check (digit or X), optionally
# written 6-8-4 with spaces or dashes.
_ID = re.compile(
    r"(?=[1-9])"
    + _NUM_BEFORE
    + r"[1-9][0-9]{5}(?P<sep>[ \-]?)"
    + r"(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    + r"(?P=sep)[0-9]{3}[0-9Xx]"
    + _NUM_AFTER
)
# Old 15-digit ID: province (11-15, 21-23, 31-37, 41-46, 50-54, 61-65) + 4 more region digits,
# then yymmdd (19yy) and a 3-digit sequence; no check digit. Optionally 6-6-3 grouped.
_ID15 = re.compile(
    r"(?=[1-6])"
    + _NUM_BEFORE
    + r"(?:1[1-5]|2[1-3]|3[1-7]|4[1-6]|5[0-4]|6[1-5])[0-9]{4}(?P<sep>[ \-]?)"
    + r"[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    + r"(?P=sep)[0-9]{3}"
    + _NUM_AFTER
)
# 15-digit numbers were given out from 1984 until the 18-digit standard (1999) and the second-
# generation cards (2004): their region code is one that existed then, whatever the birth year.
_OLD_ID_ISSUED = (1984, 2004)

# Bank card: contiguous 13-19 digits, 4-4-4-4(-1..4) groups, or Amex 4-6-5.
_CARD = re.compile(
    r"(?=[0-9])"
    + _NUM_BEFORE
    + r"(?:[0-9]{13,19}|[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,4})?|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{5})"
    + _NUM_AFTER
)
# Issuer prefixes and the lengths each network issues: UnionPay 62, old Chinese debit 60/9[45],
# Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37, JCB 35, Discover 65. Luhn alone passes one
# random number in ten, and 15-digit Luhn numbers starting with 4 are IMEIs, not Visa cards.
_CARD_NETWORKS = (
    (re.compile(r"62|60|9[45]|35|65"), range(16, 20)),
    (re.compile(r"4"), (13, 16, 19)),
    (re.compile(r"5[1-5]|222[1-9]|22[3-9]|2[3-6]|27[01]|2720"), (16,)),
    (re.compile(r"3[47]"), (15,)),
)


def _card_shape(number: str) -> bool:
    return any(prefix.match(number) and len(number) in lengths for prefix, lengths in _CARD_NETWORKS)

# Dotted quads that are section or version numbers: "第4.2.1.3节", "固件 2.4.1.13".
_VERSION_BEFORE = re.compile(r"(?:第|版本号?|固件|规范|章节|version|ver\.?|release)\s*$", re.IGNORECASE)
_SECTION_AFTER = re.compile(r"\s*(?:节|条|章|款|版)")
# Letters may not touch an address ("v1.2.3.4"), except "IP" glued in front ("我的IP1.2.3.4").
_IP_BEFORE = r"(?:(?<=IP)|(?<=ip)|(?<![0-9A-Za-z_.]))"
_IPV4 = re.compile(_IP_BEFORE + r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9A-Za-z_]|\.[0-9])")
# IPv6 candidates: hex groups and colons (an IPv4 tail allowed); `ipaddress` decides.
_IPV6 = re.compile(
    _IP_BEFORE
    + r"(?<![0-9A-Fa-f]:)(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:[0-9]{1,3}\.){3}[0-9]{1,3})?"
    r"(?:%[0-9A-Za-z]+)?"
    r"(?![0-9A-Za-z_:]|\.[0-9])"
)

# Credentials in a URL's user-info: scheme://user:password@host...
# (ASCII classes throughout: "[!-.0-?A-~]" is printable ASCII without "/" and "@".)
_URL_USERINFO = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[!-.0-9;-?A-~]*:[!-.0-?A-~]+@[!-~]+")
_URL_TRAILING = ".,;:!?)]}'\">"
# name=value (or "name: value" for names that are unambiguous) whose value is a credential.
_CRED_NAMES = (
    r"access[_\-]?token|refresh[_\-]?token|id[_\-]?token|auth[_\-]?token|api[_\-]?key|apikey|"
    r"client[_\-]?secret|secret[_\-]?key|secret|password|passwd|pwd|token|key|sig|signature"
)
_CRED = re.compile(
    r"(?<![A-Za-z0-9])(?P<name>" + _CRED_NAMES + r")"
    r"(?P<sep>\s*=\s*|\s*:\s*)"
    r"(?P<value>[A-Za-z0-9\-._~+/%!@*^]{3,}=*)",
    re.IGNORECASE,
)
_CRED_COLON_OK = re.compile(
    r"access[_\-]?token|refresh[_\-]?token|api[_\-]?key|apikey|client[_\-]?secret|secret[_\-]?key|password|passwd|pwd",
    re.IGNORECASE,
)
# Generic names ("key", "token"...) say little: their value must look like a token (8+ chars,
# letters and digits), and "sort_key=" / "page_token=" style compounds are not enough.
_CRED_GENERIC = {"key", "token", "sig", "signature", "secret"}
_PLACEHOLDERS = {"value", "xxx", "xxxx", "none", "null", "true", "false", "your_token", "your_key",
                 "your_api_key", "your_password", "changeme", "redacted", "placeholder", "example"}
# 密码/口令 followed by 是/为/: and an ASCII value.
_CRED_ZH = re.compile(r"(?:密码|口令)(?:是|为|:)\s*(?P<value>[A-Za-z0-9\-._~+!@#$%^&*]{4,})")
_BARE_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:"
    r"gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{22,}"  # GitHub fine-grained tokens
    r"|sk-(?:proj-|live-|test-|ant-)?[A-Za-z0-9_\-]{20,}"  # OpenAI / Anthropic style
    r"|sk_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # JWT
    r")(?![A-Za-z0-9_\-])"
)


# A number written as a term of arithmetic ("= 13812345678", "13812345678 × 2") is an answer,
# not a phone or card. ("/" and "+" before are left out: "188.../189..." and "+86".)
_MATH_BEFORE = re.compile(r"[=×÷*^≈]\s*$")
_MATH_AFTER = re.compile(r"\s*[=×÷*^≈+]")


def _in_math(norm: str, start: int, end: int) -> bool:
    return bool(_MATH_BEFORE.search(norm, max(0, start - 3), start) or _MATH_AFTER.match(norm, end))


# --- detectors: each yields (kind, start, end) in the normalised copy ---------------------

Span = tuple[str, int, int]


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit() or ch in "Xx")


def _phones(norm: str) -> Iterator[Span]:
    for m in _PHONE.finditer(norm):
        if _label_ok(norm, m.start(), _PHONE_LABELS) and not _in_math(norm, m.start(), m.end()):
            yield "PHONE", m.start(), m.end()


def _landlines(norm: str) -> Iterator[Span]:
    for m in _LANDLINE.finditer(norm):
        if _label_ok(norm, m.start(), _LANDLINE_LABELS):
            yield "LANDLINE", m.start(), m.end()
    for m in _LANDLINE_GLUED.finditer(norm):
        if (
            _glued_landline(m.group("number"))
            and _label_ok(norm, m.start(), _LANDLINE_LABELS)
            and ((m.group("ext") or "").startswith("转") or _named(_LANDLINE_CONTEXT, norm, m.start()))
            and not _in_math(norm, m.start(), m.end())
        ):
            yield "LANDLINE", m.start(), m.end()


def _emails(norm: str) -> Iterator[Span]:
    for m in _EMAIL.finditer(norm):
        yield "EMAIL", m.start(), m.end()


@functools.lru_cache(maxsize=4096)
def _valid_id(number: str) -> bool:
    number = number.upper()
    try:
        if not ric.is_valid(number):
            return False
    except KeyError:  # python-stdnum 2.2: a known province with an unknown county ("112914...")
        return False
    born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    return born <= datetime.date.today()


@functools.lru_cache(maxsize=4096)
def _valid_old_id(number: str) -> bool:
    """Birth date 19yymmdd is a date, and the region code was in use while 15-digit IDs were issued."""
    try:
        datetime.date(1900 + int(number[6:8]), int(number[8:10]), int(number[10:12]))
    except ValueError:
        return False
    # The region table stdnum.cn.ric checks 18-digit IDs with; its county names carry the
    # years they were in use: "朝阳区", "[1983-]邢台市", "[1983-2019]桥东区,[2020-]襄都区".
    info = {k: v for _, props in numdb.get("cn/loc").info(number[:6]) for k, v in props.items()}
    first, last = _OLD_ID_ISSUED
    for county in info.get("county", "").split(","):
        if county and not county.startswith("["):
            return True
        years = re.match(r"\[([0-9]*)-([0-9]*)\]", county)
        if years and int(years[1] or first) <= last and int(years[2] or last) >= first:
            return True
    return False


def _ids(norm: str) -> Iterator[Span]:
    for m in _ID.finditer(norm):
        if _valid_id(_digits(m.group())) and not _in_math(norm, m.start(), m.end()):
            yield "ID", m.start(), m.end()
    for m in _ID15.finditer(norm):
        if (
            _valid_old_id(_digits(m.group()))
            and _named(_ID_CONTEXT, norm, m.start())
            and not _in_math(norm, m.start(), m.end())
        ):
            yield "ID", m.start(), m.end()


def _cards(norm: str) -> Iterator[Span]:
    for m in _CARD.finditer(norm):
        number = _digits(m.group())
        if _in_math(norm, m.start(), m.end()):
            continue
        if _card_shape(number) and luhn.is_valid(number):
            yield "BANK_CARD", m.start(), m.end()


def _ips(norm: str) -> Iterator[Span]:
    for m in _IPV4.finditer(norm):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        if _VERSION_BEFORE.search(norm, max(0, m.start() - 12), m.start()) or _SECTION_AFTER.match(norm, m.end()):
            continue
        yield "IP", m.start(), m.end()
    for m in _IPV6.finditer(norm):
        candidate = m.group()
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        # "::", "a::b" and the like are code (C++ / Rust paths), not addresses: ask for three
        # groups, or two when the first is a full 4-hex-digit group ("fe80::1", "2001::1").
        groups = [g for g in re.split(r"[:%]", candidate.split("%")[0]) if g]
        if len(groups) >= 3 or (len(groups) == 2 and len(groups[0]) == 4):
            yield "IP", m.start(), m.end()


def _secrets(norm: str) -> Iterator[Span]:
    for m in _URL_USERINFO.finditer(norm):
        end = m.end()
        while end > m.start() and norm[end - 1] in _URL_TRAILING:
            end -= 1
        yield "SECRET", m.start(), end
    for m in _CRED.finditer(norm):
        value = m.group("value").rstrip(".")
        if ":" in m.group("sep") and not _CRED_COLON_OK.fullmatch(m.group("name")):
            continue  # "key: name", "token: 3" - a YAML field or prose, not a credential
        if m.group("name").lower() in _CRED_GENERIC and (
            norm[m.start() - 1 : m.start()] == "_"
            or len(value) < 8
            or not (re.search(r"[0-9]", value) and re.search(r"[A-Za-z]", value))
        ):
            continue
        if value.lower() in _PLACEHOLDERS or len(set(value.rstrip("="))) < 2 or value.startswith("http"):
            continue
        yield "SECRET", m.start("value"), m.start("value") + len(value)
    for m in _CRED_ZH.finditer(norm):
        yield "SECRET", m.start("value"), m.end("value")
    for m in _BARE_TOKEN.finditer(norm):
        yield "SECRET", m.start(), m.end()


_DETECTORS: tuple[Callable[[str], Iterator[Span]], ...] = (_secrets, _emails, _ids, _cards, _phones, _landlines, _ips)


# --- API -----------------------------------------------------------------------------------

def find_pii(text: str) -> list[Finding]:
    """Personal data in `text`, sorted by start, non-overlapping, offsets into `text` itself."""
    norm, origin = _normalise(text)
    spans = [span for detect in _DETECTORS for span in detect(norm)]
    # Longest first, then the more specific kind; drop whatever overlaps a span already kept.
    spans.sort(key=lambda s: (-(s[2] - s[1]), _RANK[s[0]], s[1]))
    kept: list[Span] = []
    for span in spans:
        if all(span[2] <= k[1] or span[1] >= k[2] for k in kept):
            kept.append(span)
    findings = []
    for kind, start, end in sorted(kept, key=lambda s: s[1]):
        if origin is not None:
            start, end = origin[start], origin[end - 1] + 1
        findings.append(Finding(kind, start, end, text[start:end]))
    return findings


def _replace(text: str, render: Callable[[Finding], str]) -> tuple[str, Counter[str]]:
    counts: Counter[str] = Counter()
    out: list[str] = []
    at = 0
    for f in find_pii(text):
        out += [text[at:f.start], render(f)]
        at = f.end
        counts[f.kind] += 1
    out.append(text[at:])
    return "".join(out), counts


def scrub(text: str) -> tuple[str, Counter[str]]:
    """`text` with every finding replaced by `<KIND>`, and how many of each kind were replaced."""
    return _replace(text, lambda f: f"<{f.kind}>")


def _mask_one(f: Finding) -> str:
    """A hint of the value for public pages, never the value itself."""
    value = unicodedata.normalize("NFKC", f.value)
    digits = _digits(value)
    if f.kind == "PHONE":
        national = digits[-11:]
        return f"{national[:3]}****{national[-4:]}"
    if f.kind == "LANDLINE":
        return "****" + digits[-2:] if len(digits) > 6 else "<LANDLINE>"
    if f.kind == "EMAIL":
        local, _, domain = value.partition("@")
        return f"{local[0]}***@{domain}"
    if f.kind == "BANK_CARD":
        return "****" + digits[-4:]
    if f.kind == "IP":
        if ":" in value:
            return value.split(":")[0] + ":****"
        return ".".join(value.split(".")[:2]) + ".*.*"
    return f"<{f.kind}>"  # ID, SECRET: no safe hint


def mask(text: str) -> str:
    """`text` with every finding masked, keeping a hint (138****5678, a***@example.com, ****1234)."""
    return _replace(text, _mask_one)[0]
