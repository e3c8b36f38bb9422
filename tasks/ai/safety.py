"""The AI Safety Console's checks on outbound content: PII, profanity, spam, CAN-SPAM and GDPR.

Each finding has a category, a type, a severity and an action; the verdict of a scan is the strictest action:
`block` stops the message, `modify` returns it redacted, `flag` lets it go and asks a person to look, `allow` only
records. Findings never carry the matched text itself (a card number in the log would be a second leak), only its
span, a masked preview and the rule that fired.

PII uses presidio-analyzer's pattern recognizers (credit card, IBAN, email, US SSN) over a blank spaCy pipeline: no
model download, no network (tldextract's suffix-list fetch is disabled by `TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""`).
Card and IBAN matches are checked again with our own Luhn and mod-97 code; phones come from `phonenumbers`.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field

from models.ai import SafetyAction, SafetyCategory, SafetyChannel, SafetySeverity

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

# Before presidio (and tldextract under it) is imported anywhere in this process: never fetch the suffix list.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

_ACTION_RANK = {SafetyAction.ALLOW: 0, SafetyAction.FLAG: 1, SafetyAction.MODIFY: 2, SafetyAction.BLOCK: 3}
PHONE_REGIONS = ("US", "GB", "DE", "FR", "CA", "AU")

LawfulBasis = Literal[
    "consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests"
]


class ScanContext(BaseModel):
    """What the scanner knows about the message besides its body."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=1000)
    headers: dict[str, str] = Field(default_factory=dict)
    # Commercial email is what CAN-SPAM covers; None means "email is commercial, other channels are not".
    commercial: bool | None = None
    # A real thread id makes "Re:" honest; without one a "Re:" subject pretends a conversation that never happened.
    in_reply_to: str | None = Field(default=None, max_length=1000)
    # The sender's postal address when the sending system appends it as a footer.
    sender_postal_address: str | None = Field(default=None, max_length=500)
    gdpr_applies: bool = False
    contact_lawful_basis: LawfulBasis | None = None


@dataclass
class Finding:
    category: SafetyCategory
    finding_type: str
    severity: SafetySeverity
    action: SafetyAction
    start: int | None = None
    end: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    replacement: str | None = None

    def as_json(self) -> dict[str, Any]:
        detail = dict(self.detail)
        if self.start is not None:
            detail.update(start=self.start, end=self.end)
        return {
            "category": self.category.value,
            "type": self.finding_type,
            "severity": self.severity.value,
            "action": self.action.value,
            "detail": detail,
        }


@dataclass
class Verdict:
    findings: list[Finding]
    action: SafetyAction
    modified_content: str | None

    @property
    def blocked(self) -> bool:
        return self.action == SafetyAction.BLOCK

    @property
    def allowed(self) -> bool:
        return not self.blocked


# ------------------------------------------------------------------------------------------------ checksums


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    compact = re.sub(r"[\s-]", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _mask(value: str) -> str:
    """A preview safe to log: the last four characters at most, the rest starred."""
    compact = re.sub(r"\s", "", value)
    keep = 4 if len(compact) > 8 else 0
    return "*" * (len(compact) - keep) + compact[len(compact) - keep :]


# ------------------------------------------------------------------------------------------------ PII

_analyzer: AnalyzerEngine | None = None
_analyzer_lock = threading.Lock()
# spaCy documents no thread-safety for calling one pipeline from several threads (its tokenizer caches and interns
# strings into a shared vocab, explosion/spaCy#6398), and the ai worker runs scans on a thread pool. The analysis is
# CPU-bound Python under the GIL, so serialising it costs threads next to nothing.
_analyze_lock = threading.Lock()

_PII_POLICY: dict[str, tuple[str, SafetySeverity, SafetyAction, str]] = {
    # presidio entity -> (our type, severity, action, replacement)
    "CREDIT_CARD": ("credit_card", SafetySeverity.CRITICAL, SafetyAction.MODIFY, "[REDACTED CARD]"),
    "US_SSN": ("us_ssn", SafetySeverity.CRITICAL, SafetyAction.MODIFY, "[REDACTED SSN]"),
    "IBAN_CODE": ("iban", SafetySeverity.HIGH, SafetyAction.MODIFY, "[REDACTED IBAN]"),
    # Contact details are normal in sales email (signatures): recorded, not changed.
    "EMAIL_ADDRESS": ("email_address", SafetySeverity.LOW, SafetyAction.ALLOW, "[REDACTED EMAIL]"),
}
_SSN_CONTEXT = re.compile(r"\b(?:ssn|social security|social sec|ss#|tax id|taxpayer)\b", re.IGNORECASE)


def analyzer() -> AnalyzerEngine:
    """Presidio's analyzer with pattern recognizers only, built once per process (threads share it; calls to it go
    through `_analyze_lock`)."""
    global _analyzer
    if _analyzer is not None:
        return _analyzer
    with _analyzer_lock:
        if _analyzer is None:
            import spacy
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import (
                CreditCardRecognizer,
                EmailRecognizer,
                IbanRecognizer,
                UsSsnRecognizer,
            )

            class BlankSpacyEngine(SpacyNlpEngine):
                """A tokenizer-only English pipeline: the pattern recognizers need no trained model."""

                def load(self) -> None:
                    self.nlp = {"en": spacy.blank("en")}

            engine = BlankSpacyEngine(models=[{"lang_code": "en", "model_name": "blank:en"}])
            engine.load()
            registry = RecognizerRegistry(supported_languages=["en"])
            for recognizer in (CreditCardRecognizer(), IbanRecognizer(), EmailRecognizer(), UsSsnRecognizer()):
                registry.add_recognizer(recognizer)
            _analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])
    return _analyzer


def find_pii(content: str) -> list[Finding]:
    findings: list[Finding] = []
    engine = analyzer()
    with _analyze_lock:
        results = engine.analyze(content, language="en", entities=list(_PII_POLICY))
    for result in results:
        value = content[result.start : result.end]
        if result.entity_type == "CREDIT_CARD" and not luhn_valid(value):
            continue
        if result.entity_type == "IBAN_CODE" and not iban_valid(value):
            continue
        if result.entity_type == "US_SSN":
            # Presidio scores a bare 9-digit group weakly: a dashed SSN, or one next to words saying so, counts.
            window = content[max(0, result.start - 40) : result.start]
            if result.score < 0.5 and not _SSN_CONTEXT.search(window):
                continue
        finding_type, severity, action, replacement = _PII_POLICY[result.entity_type]
        findings.append(
            Finding(
                SafetyCategory.PII,
                finding_type,
                severity,
                action,
                result.start,
                result.end,
                {"preview": _mask(value), "score": round(result.score, 2)},
                replacement,
            )
        )
    findings.extend(_find_phones(content, exclude=[(f.start or 0, f.end or 0) for f in findings]))
    return findings


# A run of at least seven digits with the separators phone numbers use, with its leading "+" or "(".
_PHONE_CANDIDATE = re.compile(r"[+(]?\d[\d\s().\-/]{5,}\d")


def _find_phones(content: str, exclude: list[tuple[int, int]]) -> list[Finding]:
    spans: dict[tuple[int, int], str] = {}
    # phonenumbers' matcher is the slow part of a scan: run it only on digit runs that could be phones.
    for candidate in _PHONE_CANDIDATE.finditer(content):
        offset = candidate.start()
        for region in PHONE_REGIONS:
            matcher = phonenumbers.PhoneNumberMatcher(candidate.group(0), region, leniency=phonenumbers.Leniency.VALID)
            for match in matcher:
                start, end = offset + match.start, offset + match.end
                if any(start < e and s < end for s, e in exclude):
                    continue  # the digits of a card or IBAN already found
                if not any(start < e and s < end for s, e in spans):
                    spans[(start, end)] = phonenumbers.region_code_for_number(match.number) or region
    return [
        Finding(
            SafetyCategory.PII,
            "phone_number",
            SafetySeverity.LOW,
            SafetyAction.ALLOW,
            start,
            end,
            {"preview": _mask(content[start:end]), "region": region},
            "[REDACTED PHONE]",
        )
        for (start, end), region in sorted(spans.items())
    ]


# ------------------------------------------------------------------------------------------------ profanity

_PROFANITY = re.compile(
    r"\b(?:f[u*@]+c?k(?:ing|ed|er|s)?|f\*+k|motherf\w*|sh[i1*]t(?:ty|s)?|bullsh[i1*]t|b[i1*]tch(?:es)?|"
    r"assholes?|bastards?|cunts?|wtf|piss(?:ed)? off|dumbass|jackass|crap(?:py)?|goddamn|sluts?|whores?)\b",
    re.IGNORECASE,
)


def find_profanity(content: str) -> list[Finding]:
    return [
        Finding(
            SafetyCategory.PROFANITY,
            "profanity",
            SafetySeverity.MEDIUM,
            SafetyAction.MODIFY,
            match.start(),
            match.end(),
            {"preview": match.group(0)[0] + "*" * (len(match.group(0)) - 1)},
            match.group(0)[0] + "*" * (len(match.group(0)) - 1),
        )
        for match in _PROFANITY.finditer(content)
    ]


# ------------------------------------------------------------------------------------------------ spam

_SPAM_PHRASES = (
    "act now", "100% free", "free money", "guaranteed", "risk-free", "risk free", "click here", "limited time",
    "you have been selected", "you've been selected", "winner", "cash bonus", "no obligation", "double your",
    "make money", "earn extra cash", "once in a lifetime", "buy now", "order now", "special promotion",
    "no cost", "amazing deal", "miracle", "lowest price", "$$$", "urgent response needed", "this isn't spam",
)  # fmt: skip
_SHORTENERS = re.compile(
    r"\b(?:bit\.ly|tinyurl\.com|goo\.gl|t\.co|ow\.ly|is\.gd|buff\.ly|rebrand\.ly|cutt\.ly|shorturl\.at|tiny\.cc)/",
    re.IGNORECASE,
)
_REPEATED_PUNCTUATION = re.compile(r"[!?]{3,}|!{2,}")
_STOPWORDS = frozenset(
    {"the", "with", "your", "from", "this", "that", "about", "into", "have", "were", "will", "just", "quick",
     "question", "hello", "following"}
)  # fmt: skip
SPAM_FLAG_SCORE = 3.0
SPAM_BLOCK_SCORE = 6.0


def spam_score(content: str, subject: str | None) -> tuple[float, list[str]]:
    """Weighted rules; returns the score and the rules that fired (names, not matched text)."""
    text = f"{subject or ''}\n{content}"
    lowered = text.lower()
    rules: list[str] = []
    score = 0.0
    phrases = [p for p in _SPAM_PHRASES if p in lowered]
    if phrases:
        score += min(4.5, 1.5 * len(phrases))
        rules.append(f"trigger_phrases:{len(phrases)}")
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 20:
        ratio = sum(c.isupper() for c in letters) / len(letters)
        if ratio > 0.5:
            score += 2.0
            rules.append("capitals_ratio_high")
        elif ratio > 0.3:
            score += 1.0
            rules.append("capitals_ratio")
    if subject and len(subject) > 8 and subject.upper() == subject and any(c.isalpha() for c in subject):
        score += 1.5
        rules.append("subject_all_caps")
    punctuation = len(_REPEATED_PUNCTUATION.findall(text))
    if punctuation:
        score += min(2.0, 1.0 * punctuation)
        rules.append("repeated_punctuation")
    if _SHORTENERS.search(text):
        score += 2.0
        rules.append("url_shortener")
    if subject:
        subject_words = {w for w in re.findall(r"[a-z]{4,}", subject.lower()) if w not in _STOPWORDS}
        body_words = set(re.findall(r"[a-z]{4,}", content.lower()))
        # Loose stem match ("pricing" ~ "price") so a fair subject is not called a mismatch.
        if len(subject_words) >= 2 and not any(
            any(b.startswith(w[:5]) or w.startswith(b[:5]) for b in body_words) for w in subject_words
        ):
            score += 1.5
            rules.append("subject_body_mismatch")
    return score, rules


def find_spam(content: str, subject: str | None) -> list[Finding]:
    score, rules = spam_score(content, subject)
    if score < SPAM_FLAG_SCORE:
        return []
    blocking = score >= SPAM_BLOCK_SCORE
    severity = SafetySeverity.HIGH if blocking else SafetySeverity.MEDIUM
    action = SafetyAction.BLOCK if blocking else SafetyAction.FLAG
    return [Finding(SafetyCategory.SPAM, "spam", severity, action, detail={"score": score, "rules": rules})]


# ------------------------------------------------------------------------------------------------ CAN-SPAM

_UNSUBSCRIBE = re.compile(
    r"\b(?:unsubscribe|opt[- ]?out|manage (?:your )?(?:email )?preferences|stop receiving|reply stop)\b", re.IGNORECASE
)
_POSTAL_ADDRESS = re.compile(
    r"\b\d{1,6}\s+(?:[A-Z0-9][\w.'-]*\s+){1,5}(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|way|"
    r"court|ct|plaza|place|pl|parkway|pkwy|square|sq)\b\.?|\bp\.?\s?o\.?\s+box\s+\d+",
    re.IGNORECASE,
)
_FAKE_THREAD = re.compile(r"^\s*(?:re|fwd?|fw)\s*:", re.IGNORECASE)
_DECEPTIVE_SUBJECT = re.compile(
    r"\b(?:you(?:'ve| have) won|account (?:suspended|locked|closed)|final notice|payment (?:overdue|failed|due)|"
    r"invoice attached|password reset|your order (?:has )?shipped|order confirmation|security alert)\b",
    re.IGNORECASE,
)


def find_can_spam(content: str, context: ScanContext) -> list[Finding]:
    findings: list[Finding] = []
    has_list_unsubscribe = any(name.lower() == "list-unsubscribe" for name in context.headers)
    if not has_list_unsubscribe and not _UNSUBSCRIBE.search(content):
        findings.append(
            Finding(SafetyCategory.CAN_SPAM, "missing_unsubscribe", SafetySeverity.HIGH, SafetyAction.BLOCK)
        )
    if not context.sender_postal_address and not _POSTAL_ADDRESS.search(content):
        findings.append(
            Finding(SafetyCategory.CAN_SPAM, "missing_postal_address", SafetySeverity.MEDIUM, SafetyAction.FLAG)
        )
    subject = context.subject or ""
    if _FAKE_THREAD.search(subject) and not context.in_reply_to:
        findings.append(
            Finding(
                SafetyCategory.CAN_SPAM,
                "deceptive_subject",
                SafetySeverity.HIGH,
                SafetyAction.BLOCK,
                detail={"rule": "reply_or_forward_without_thread"},
            )
        )
    elif _DECEPTIVE_SUBJECT.search(subject):
        findings.append(
            Finding(
                SafetyCategory.CAN_SPAM,
                "deceptive_subject",
                SafetySeverity.HIGH,
                SafetyAction.BLOCK,
                detail={"rule": "misleading_claim"},
            )
        )
    return findings


# ------------------------------------------------------------------------------------------------ GDPR

_SPECIAL_CATEGORIES: dict[str, re.Pattern[str]] = {
    "health": re.compile(
        r"\b(?:diagnos\w+|diabet\w+|cancer|hiv|pregnan\w+|disabilit\w+|mental health|depression|medication|"
        r"chemotherapy|illness|medical condition)\b",
        re.IGNORECASE,
    ),
    "religion": re.compile(
        r"\b(?:religio\w+|muslim|christian|jewish|hindu|buddhist|mosque|synagogue)\b", re.IGNORECASE
    ),
    "ethnic_origin": re.compile(r"\b(?:racial|race|ethnic\w*)\b", re.IGNORECASE),
    "sexual_orientation": re.compile(
        r"\b(?:gay|lesbian|bisexual|transgender|sexual orientation|sex life)\b", re.IGNORECASE
    ),
    "political_opinion": re.compile(r"\b(?:political (?:views?|party|affiliation|opinions?))\b", re.IGNORECASE),
    "trade_union": re.compile(r"\b(?:trade union|union member\w*)\b", re.IGNORECASE),
    "genetic_biometric": re.compile(r"\b(?:genetic|biometric|fingerprints?|dna)\b", re.IGNORECASE),
}


def find_gdpr(content: str, context: ScanContext) -> list[Finding]:
    findings: list[Finding] = []
    categories = sorted(name for name, pattern in _SPECIAL_CATEGORIES.items() if pattern.search(content))
    if categories:
        findings.append(
            Finding(
                SafetyCategory.GDPR,
                "special_category_data",
                SafetySeverity.HIGH,
                SafetyAction.FLAG,
                detail={"categories": categories},
            )
        )
    if context.gdpr_applies and context.contact_lawful_basis is None:
        findings.append(Finding(SafetyCategory.GDPR, "no_lawful_basis", SafetySeverity.CRITICAL, SafetyAction.BLOCK))
    return findings


# ------------------------------------------------------------------------------------------------ the scan


def scan(content: str, channel: SafetyChannel, context: ScanContext) -> Verdict:
    findings = find_pii(content) + find_profanity(content)
    findings += find_spam(content, context.subject)
    commercial = context.commercial if context.commercial is not None else channel == SafetyChannel.EMAIL
    if channel == SafetyChannel.EMAIL and commercial:
        findings += find_can_spam(content, context)
    findings += find_gdpr(content, context)
    action = max((f.action for f in findings), key=_ACTION_RANK.__getitem__, default=SafetyAction.ALLOW)
    modified = redact(content, findings) if action == SafetyAction.MODIFY else None
    return Verdict(findings=findings, action=action, modified_content=modified)


def redact(content: str, findings: list[Finding]) -> str:
    """Replace every span a `modify` finding covers; overlapping spans collapse into the first replacement."""
    spans = sorted(
        (f.start, f.end, f.replacement or "[REDACTED]")
        for f in findings
        if f.action == SafetyAction.MODIFY and f.start is not None and f.end is not None
    )
    out: list[str] = []
    cursor = 0
    for start, end, replacement in spans:
        if start < cursor:
            cursor = max(cursor, end)
            continue
        out.append(content[cursor:start])
        out.append(replacement)
        cursor = end
    out.append(content[cursor:])
    return "".join(out)
