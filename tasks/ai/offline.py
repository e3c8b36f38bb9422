"""The deterministic offline engine: rules over speaker turns, producing the same schemas as the model.

It is the engine when `LLM_PROVIDER=offline` and the fallback when a model's answer is unusable. Rules favour
precision over recall (a wrong task in someone's queue costs more than a missed one), and every item carries a
confidence that reflects how strong the cue was. That confidence is a cue-strength score, not a calibrated
probability: on the held-out snippets in tests/ai/ (phrasing the rules were not written for) precision was 0.64
and recall 0.36, against 0.88 and 0.72 on the gold set they were tuned with, and items scored 0.8 or more were
right 4 times in 7. `make bench` prints both sets and the precision per confidence band.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tasks.ai.dates import find_due_phrase
from tasks.ai.schemas import (
    ActionDraft,
    ActionDrafts,
    ActionType,
    BattleCard,
    DocType,
    Faq,
    FaqItem,
    KnowledgeBody,
    Objection,
    ObjectionCategory,
    ObjectionHandler,
    Playbook,
    PlaybookStage,
    SourcedPoint,
)
from tasks.ai.transcript import Turn, sentences

# The schemas' length limits (tasks/ai/schemas.py) for text quoted from the transcript.
POINT_CHARS = 1000
DESCRIPTION_CHARS = 2000
TITLE_CHARS = 300

# Competitors a sales-engagement platform meets most; a name is also picked up from "we use X" style phrases.
KNOWN_COMPETITORS = (
    "Outreach", "Salesloft", "Apollo", "HubSpot", "Gong", "Chorus", "Clari", "ZoomInfo", "Salesforce", "Pipedrive",
    "Lemlist", "Reply.io", "Instantly", "Seamless.AI", "Lusha", "Mixmax", "Yesware", "Copper", "Freshsales", "Clay",
    "Regie.ai", "11x",
)  # fmt: skip
_COMPETITOR_RE = re.compile(r"\b(" + "|".join(re.escape(name) for name in KNOWN_COMPETITORS) + r")\b", re.IGNORECASE)
_COMPETITOR_CONTEXT_RE = re.compile(
    r"\b(?:currently use|already use|we use|we're using|we are using|switch(?:ing|ed)? from|moving from|"
    r"compared to|versus|vs\.?|under contract with|locked into)\s+(?P<name>[A-Z][\w.]+(?:\s[A-Z][\w.]+)?)"
)

# Verbs that make "I'll ..." an action, grouped by the action type they suggest.
_FOLLOW_UP_VERBS = {
    "send", "email", "share", "forward", "follow", "circle", "get", "loop", "call", "ring", "schedule", "book",
    "reach", "ping", "introduce", "connect", "text", "reconnect", "invite", "shoot", "drop", "show", "upload",
}  # fmt: skip
_TASK_VERBS = {
    "prepare", "draft", "write", "put", "review", "check", "update", "create", "run", "pull", "build", "configure",
    "set", "confirm", "talk", "ask", "find", "figure", "dig", "work", "add", "arrange", "provision", "sign",
    "walk", "demo", "take", "grab", "double-check", "sort", "compile", "map", "enable", "approve", "raise",
    "investigate", "fix", "look", "escalate", "file", "open", "log", "troubleshoot", "reset", "test", "countersign",
    "analyze", "analyse", "resend",
}  # fmt: skip
_ACTION_VERBS = _FOLLOW_UP_VERBS | _TASK_VERBS
_TICKET_VERBS = {"fix", "investigate", "escalate", "troubleshoot", "file", "log", "reset"}
# Verbs that are ticket work when the exchange is about a problem ("let me look into that" after "it's broken").
_PROBLEM_VERBS = {"look", "check", "dig", "test", "sort", "figure"}
_CONTACT_PHRASE = re.compile(r"^(?:check (?:back|in)|follow up|get back|circle back|touch base)\b")
_TICKET_WORDS = re.compile(
    r"\b(?:bug|error|errors|broken|crash\w*|outage|ticket|glitch|not working|isn't working|doesn't work|"
    r"failing|fails|failed|sync issue|support case|defect|down for)\b"
)
_PROBLEM_CONTEXT = re.compile(r"\b(?:issue|problem|spam folder|landing in spam|bounc\w+|wrong|missing|can't log in)\b")
_MEETING_WORDS = re.compile(r"\b(?:call|meeting|demo|invite|calendar|time to talk|sync|check-in|session)\b")
_OUTBOUND_WORDS = re.compile(r"\b(?:you|your|over|him|her|them|the team|with you)\b")

_COMPOUND = re.compile(r"\band (?:then )?(?:" + "|".join(sorted(_ACTION_VERBS)) + r")\b")
_HEDGE = re.compile(r"\b(?:maybe|probably|might|try to|hopefully|i think|i guess|possibly|if i can|should be able)\b")
_NEGATED = re.compile(r"\b(?:won't|will not|can't|cannot|don't|do not|didn't|never|no need to|not going to|wouldn't)\b")
_CONDITIONAL = re.compile(r"^\s*(?:if|when|once|unless|whether)\b|\bif (?:you|we|they) (?:want|decide|need|go)\b")

_FIRST_PERSON = re.compile(
    r"\b(?P<who>i'll|i will|i'm going to|i am going to|i'm gonna|let me|i can|i'd be happy to|i'll be sure to|"
    r"we'll|we will|we're going to|we are going to|we can)\s+(?:also\s+|just\s+|go ahead and\s+|definitely\s+|"
    r"quickly\s+|personally\s+|then\s+|make sure to\s+|get\s+(?=[a-z]+\s+(?:over|out|back)))?(?P<verb>[a-z-]+)"
)
_REQUEST = re.compile(
    r"\b(?:can|could|would|will) you(?: please| also| guys| folks| just)?\s+(?P<verb>[a-z-]+)|"
    r"(?:^\s*|,\s*|\bso\s+)(?:please|pls)\s+(?P<verb2>[a-z-]+)|"
    r"\b(?:you'll|you will|you) need to\s+(?P<verb3>[a-z-]+)"
)
# "Can you walk me through ...", "could you tell me ...": asking for an explanation on the call, not future work.
_EXPLAIN_NOW = re.compile(r"\b(?:can|could|would) you (?:walk (?:me|us) through|tell (?:me|us)|explain)\b")
_LETS = re.compile(
    r"\blet's\s+(?:go ahead and\s+|try to\s+)?(?P<what>schedule|set up|book|plan|find a time|get (?:something|a time|"
    r"a call|a meeting|time) on|reconnect|regroup|touch base|meet|sync|circle back|follow up|talk again|do a call|"
    r"do a demo|put (?:something|time) on)"
)

_QUESTION_SMALL_TALK = re.compile(
    r"^(?:how are you|how's it going|can you hear me|you there|right\?|ok\?|okay\?|does that make sense|"
    r"sound good|sounds good|you know)"
)

_OBJECTION_RULES: list[tuple[ObjectionCategory, re.Pattern[str], float]] = [
    (
        ObjectionCategory.PRICE,
        re.compile(
            r"\b(?:too expensive|pricey|expensive|costs? too much|over (?:our|the) budget|out of (?:our|the) budget|"
            r"can't afford|cannot afford|price is (?:too )?(?:high|steep)|budget is tight|no budget|cheaper|"
            r"price point|too much money|sticker shock)\b"
        ),
        0.8,
    ),
    (
        ObjectionCategory.AUTHORITY,
        re.compile(
            r"\b(?:run (?:it|this) by|check with|talk to|get approval from|sign[- ]off from|loop in|ask) (?:my|our|the)"
            r" (?:boss|manager|vp|cfo|ceo|cro|cto|legal|procurement|director|board|head of \w+|leadership)\b|"
            r"\bnot (?:my|really my) (?:decision|call)\b|\bdecision maker\b|\bneeds? (?:sign[- ]off|approval)\b"
        ),
        0.8,
    ),
    (
        ObjectionCategory.NEED,
        re.compile(
            r"\b(?:don't (?:really )?(?:need|see the need)|not a priority|"
            r"(?:happy|fine|ok|okay) with (?:what we have|our current|the current)|"
            r"not sure (?:we need|it's a fit|this is relevant|we'd use)|no (?:real )?use case|"
            r"doesn't solve|not a problem for us|we manage fine)\b"
        ),
        0.75,
    ),
    (
        ObjectionCategory.TIMING,
        re.compile(
            r"\b(?:not the right time|bad timing|timing is(?:n't| not) (?:great|right)|next (?:quarter|year)|"
            r"revisit (?:in|this|it)|too busy|after (?:the )?(?:holidays|renewal|re-?org)|not right now|maybe later|"
            r"budget freeze|hiring freeze|in the middle of)\b"
        ),
        0.7,
    ),
    (
        ObjectionCategory.COMPETITOR,
        re.compile(
            r"\b(?:already (?:use|using|have|pay for)|under contract with|locked into|"
            r"contract (?:with \w+ )?runs until|"
            r"(?:they|\w+) (?:is|are) cheaper|switching costs?)\b"
        ),
        0.75,
    ),
    (
        ObjectionCategory.TRUST,
        re.compile(
            r"\b(?:security|privacy|compliance|gdpr|soc ?2|data residency) (?:concerns?|worries|questions|review|team)|"
            r"\bworried about (?:data|security|privacy|compliance)|\bnever heard of (?:you|your company)\b|"
            r"\b(?:don't|do not) trust\b|\bburned (?:before|by)\b|\btoo risky\b|\bhow do (?:i|we) know\b|"
            r"\bhallucinat\w*|\bsounds? too good\b"
        ),
        0.75,
    ),
]
_INTEGRATION = re.compile(r"\b(?:integrat\w*|sync\w*|connect\w*|plug\w* into|import\w* from|export\w* to)\b")
_PROOF = re.compile(
    r"\d|\b(?:case study|customers? like|for example|for instance|reference|soc ?2|iso 27001|roi|"
    r"saved|increase[ds]?|reduced?|cut)\b",
    re.IGNORECASE,
)

_POSITIVE = re.compile(
    r"\b(?:like[sd]?|love[sd]?|good|great|cheaper|easy|easier|better|strong|solid|works? well|nice|fast)\b"
)
_NEGATIVE = re.compile(
    r"\b(?:but|problem|struggle|pain|hard|clunky|slow|expensive|missing|lack|lacks|doesn't|don't|can't|"
    r"frustrat\w*|complain\w*|manual|annoying|limited|bugs?)\b"
)
_DIFFERENTIATOR = re.compile(
    r"\b(?:unlike|we also|only we|our \w+ (?:is|are|does|do|can|lets)|we (?:do|offer|include|integrate|support|"
    r"handle|give you)|built[- ]in|native(?:ly)?|out of the box|included|no extra|faster|better|automatic\w*)\b"
)
_BUT = re.compile(r",?\s+\bbut\b\s+", re.IGNORECASE)
_PROBE = re.compile(r"^(?:have you|how do you|how does|what happens when|does (?:it|that|\w+)|are you able|can you)\b")

_STAGES: list[tuple[str, re.Pattern[str]]] = [
    (
        "Qualification",
        re.compile(
            r"\b(?:budget|timeline|decision|sign[- ]off|who else|procurement|by when|how many (?:reps|seats|users))\b"
        ),
    ),
    ("Discovery", re.compile(r"^(?:what|how|why|tell me|walk me|can you tell|could you tell|who|when|where|do you)\b")),
    (
        "Presentation",
        re.compile(
            r"\b(?:we|our platform|our product|you can|lets you|feature|integrat\w*|dashboard|demo|automat\w*)\b"
        ),
    ),
]


@dataclass(frozen=True)
class Roles:
    """Which speakers are on our side of the call (the reps); the rest are prospects."""

    internal: frozenset[str]

    def is_internal(self, speaker: str) -> bool:
        return speaker.casefold() in self.internal


def infer_roles(turns: Sequence[Turn], internal_names: Iterable[str] = ()) -> Roles:
    """Speakers matching a team member's name are reps; without a match, the first speaker is (reps open calls)."""
    names = [n.casefold() for n in internal_names if n]
    internal = {t.speaker.casefold() for t in turns if any(_name_matches(t.speaker.casefold(), n) for n in names)}
    if not internal:
        internal = {turns[0].speaker.casefold()}
    return Roles(internal=frozenset(internal))


def _name_matches(label: str, full_name: str) -> bool:
    if label == full_name:
        return True
    parts = full_name.split()
    return bool(parts) and label in {parts[0], parts[-1]}


# ---------------------------------------------------------------------------------------------------- actions


def extract_actions(turns: Sequence[Turn], participant_names: Sequence[str] = ()) -> ActionDrafts:
    """Actions stated in the turns: commitments, requests and proposals to meet, one per sentence at most.

    A request answered by its addressee within two turns ("Can you send X?" - "Sure, by Friday") is one action:
    the request names the work, the answer the deadline."""
    found: list[tuple[int, ActionDraft]] = []
    speakers = list(dict.fromkeys(t.speaker for t in turns))
    for position, turn in enumerate(turns):
        for sentence in sentences(turn.text):
            draft = _action_from_sentence(sentence, turn, position, turns, speakers, participant_names)
            if draft is not None:
                found.append((position, draft))
    return ActionDrafts(actions=_merge_answered_requests(found, turns))


_AFFIRMATIVE = re.compile(r"^\s*(?:yes|yeah|yep|sure|absolutely|of course|definitely|will do|sounds good|ok|okay)\b")


def _merge_answered_requests(found: list[tuple[int, ActionDraft]], turns: Sequence[Turn]) -> list[ActionDraft]:
    merged: list[ActionDraft] = []
    absorbed: set[int] = set()
    for number, (position, draft) in enumerate(found):
        if number in absorbed:
            continue
        is_request = draft.owner_speaker is not None and draft.owner_speaker != turns[position].speaker
        if not is_request:
            merged.append(draft)
            continue
        answer: tuple[int, ActionDraft] | None = None
        for later_number, (later_position, later) in enumerate(found):
            if (
                later_number not in absorbed
                and position < later_position <= position + 2
                and turns[later_position].speaker == draft.owner_speaker
                and later.owner_speaker == draft.owner_speaker
            ):
                answer = (later_number, later)
                break
        if answer is not None:
            absorbed.add(answer[0])
            later = answer[1]
            merged.append(
                draft.model_copy(
                    update={
                        "turn_index": later.turn_index,
                        "due_phrase": later.due_phrase or draft.due_phrase,
                        "description": f"{draft.description} / {later.description}"[:2000],
                        # A merge is only as sure as its weaker half: pairing the wrong answer is its failure mode.
                        "confidence": min(draft.confidence, later.confidence),
                    }
                )
            )
            continue
        reply = _affirmative_reply(position, draft.owner_speaker, turns)
        if reply is not None:
            due = find_due_phrase(reply.text)
            update: dict[str, object] = {}
            if due is not None and draft.due_phrase is None:
                update.update(due_phrase=due[1], turn_index=reply.index)
            draft = draft.model_copy(update=update)
        merged.append(draft)
    return merged


def _affirmative_reply(position: int, addressee: str | None, turns: Sequence[Turn]) -> Turn | None:
    for later in range(position + 1, min(position + 3, len(turns))):
        if turns[later].speaker == addressee:
            return turns[later] if _AFFIRMATIVE.search(turns[later].text.lower()) else None
    return None


def _action_from_sentence(
    sentence: str,
    turn: Turn,
    position: int,
    turns: Sequence[Turn],
    speakers: Sequence[str],
    participant_names: Sequence[str],
) -> ActionDraft | None:
    lowered = sentence.lower().replace("\u2019", "'")
    if _CONDITIONAL.search(lowered):
        return None
    owner: str | None
    confidence: float
    clause: str
    verb: str
    if match := _LETS.search(lowered):
        owner, confidence, verb = turn.speaker, 0.6, "schedule"
        clause = sentence[match.start() :]
        # "let's schedule a call" is contact; "let's plan the migration" or "set up a pilot" is work.
        kind = (
            ActionType.FOLLOW_UP
            if match.group("what") not in {"plan", "set up"} or _MEETING_WORDS.search(lowered[match.end() :])
            else ActionType.TASK
        )
    elif (match := _FIRST_PERSON.search(lowered)) and match.group("verb") in _ACTION_VERBS:
        if _NEGATED.search(lowered[: match.end()]):
            return None
        who, verb = match.group("who"), match.group("verb")
        owner = turn.speaker
        confidence = {"i can": 0.6, "we can": 0.5, "let me": 0.75}.get(who, 0.7 if who.startswith("we") else 0.85)
        clause = sentence[match.start("verb") :]
        kind = _classify(verb, lowered[match.start("verb") :], _context(turn, position, turns))
    elif _EXPLAIN_NOW.search(lowered):
        return None
    elif (match := _REQUEST.search(lowered)) and (
        (verb := match.group("verb") or match.group("verb2") or match.group("verb3") or "") in _ACTION_VERBS
    ):
        if _NEGATED.search(lowered[: match.end()]):
            return None
        owner = _addressee(sentence, turn, position, turns, speakers, participant_names)
        confidence = 0.7 if match.group("verb") else 0.6
        start = (
            match.start("verb")
            if match.group("verb")
            else match.start("verb2")
            if match.group("verb2")
            else (match.start("verb3"))
        )
        clause = sentence[start:]
        kind = _classify(verb, lowered[start:], _context(turn, position, turns))
    else:
        return None
    if _HEDGE.search(lowered):
        confidence -= 0.2
    if _COMPOUND.search(clause.lower()):
        # "I'll set up X and schedule Y": two actions in one clause, and the rules keep only one.
        confidence -= 0.15
    found = find_due_phrase(sentence)
    if found is not None:
        confidence += 0.05
    return ActionDraft(
        type=kind,
        title=_title(clause),
        description=clip(sentence.strip(), DESCRIPTION_CHARS),
        owner_speaker=owner,
        due_phrase=found[1] if found else None,
        turn_index=turn.index,
        confidence=round(min(max(confidence, 0.05), 0.95), 2),
    )


def _context(turn: Turn, position: int, turns: Sequence[Turn]) -> str:
    """The exchange a sentence belongs to: its own turn and the turn before it."""
    previous = turns[position - 1].text if position > 0 else ""
    return f"{previous} {turn.text}".lower()


def _classify(verb: str, clause: str, context: str = "") -> ActionType:
    if _CONTACT_PHRASE.search(clause):
        return ActionType.FOLLOW_UP
    if verb in _TICKET_VERBS or _TICKET_WORDS.search(clause):
        return ActionType.TICKET
    if verb in _PROBLEM_VERBS and (_TICKET_WORDS.search(context) or _PROBLEM_CONTEXT.search(context)):
        return ActionType.TICKET
    if verb in _FOLLOW_UP_VERBS:
        return ActionType.FOLLOW_UP
    if verb in {"set", "put", "arrange"} and _MEETING_WORDS.search(clause):
        return ActionType.FOLLOW_UP
    if verb in {"walk", "demo"} and _OUTBOUND_WORDS.search(clause):
        return ActionType.FOLLOW_UP
    return ActionType.TASK


def _addressee(
    sentence: str,
    turn: Turn,
    position: int,
    turns: Sequence[Turn],
    speakers: Sequence[str],
    participant_names: Sequence[str],
) -> str | None:
    """Who a request is addressed to: a name said in the sentence (or its turn), else the other side of the exchange."""
    for text in (sentence.lower(), turn.text.lower()):
        for name in list(speakers) + list(participant_names):
            first = name.split()[0].lower()
            if not _name_matches(turn.speaker.casefold(), name.casefold()) and re.search(
                rf"\b{re.escape(first)}\b", text
            ):
                return name
    for offset in (-1, 1, -2, 2):
        neighbour = position + offset
        if 0 <= neighbour < len(turns) and turns[neighbour].speaker != turn.speaker:
            return turns[neighbour].speaker
    others = [s for s in speakers if s != turn.speaker]
    return others[0] if len(others) == 1 else None


def clip(text: str, limit: int) -> str:
    """Text cut to a schema's length limit. A turn can be one unpunctuated 20,000-character "sentence" (speech to
    text often has no full stops); uncut, it would fail validation and fail the job."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


_TITLE_STRIP = re.compile(r"^(?:over|out|back|along)\s+", re.IGNORECASE)


def _title(clause: str) -> str:
    text = clause.strip().rstrip(".!?")
    text = re.sub(r"\s+", " ", text)
    if len(text) > 80:
        text = text[:77].rsplit(" ", 1)[0] + "..."
    return text[:1].upper() + text[1:] if text else "Follow up"


# ---------------------------------------------------------------------------------------------------- documents


def build_document(doc_type: DocType, turns: Sequence[Turn], roles: Roles) -> KnowledgeBody:
    builders = {
        DocType.BATTLE_CARD: _battle_card,
        DocType.OBJECTION_HANDLER: _objection_handler,
        DocType.FAQ: _faq,
        DocType.PLAYBOOK: _playbook,
    }
    return builders[doc_type](turns, roles)


def competitors_mentioned(text: str) -> list[str]:
    names = [m.group(1) for m in _COMPETITOR_RE.finditer(text)]
    names += [m.group("name") for m in _COMPETITOR_CONTEXT_RE.finditer(text)]
    canonical = {name.casefold(): name for name in KNOWN_COMPETITORS}
    return [canonical.get(n.casefold(), n) for n in names]


def _next_turn_of(turns: Sequence[Turn], position: int, internal: bool, roles: Roles) -> tuple[int, Turn] | None:
    for later in range(position + 1, min(position + 4, len(turns))):
        if roles.is_internal(turns[later].speaker) == internal:
            return later, turns[later]
    return None


def _battle_card(turns: Sequence[Turn], roles: Roles) -> BattleCard:
    counts = Counter(name for t in turns for name in competitors_mentioned(t.text))
    competitor = counts.most_common(1)[0][0] if counts else None
    strengths: list[SourcedPoint] = []
    advantages: list[SourcedPoint] = []
    landmines: list[SourcedPoint] = []
    talk_track: list[SourcedPoint] = []
    if competitor is not None:
        name = competitor.casefold()
        mention_positions = [i for i, t in enumerate(turns) if name in t.text.casefold()]
        for position in mention_positions:
            turn = turns[position]
            for sentence in sentences(turn.text):
                lowered = sentence.lower()
                if roles.is_internal(turn.speaker):
                    if _PROBE.search(lowered):
                        landmines.append(SourcedPoint(text=clip(sentence, POINT_CHARS), turns=[turn.index]))
                    elif _DIFFERENTIATOR.search(lowered):
                        advantages.append(SourcedPoint(text=clip(sentence, POINT_CHARS), turns=[turn.index]))
                    continue
                # In a prospect's turn about the competitor, "X is nice, but Y" is a strength and a weak spot.
                for clause in _BUT.split(sentence):
                    point = SourcedPoint(text=clip(clause.strip().rstrip(","), POINT_CHARS), turns=[turn.index])
                    if _NEGATIVE.search(clause.lower()):
                        landmines.append(point)
                    elif _POSITIVE.search(clause.lower()):
                        strengths.append(point)
            reply = _next_turn_of(turns, position, internal=True, roles=roles)
            if reply is not None and not roles.is_internal(turn.speaker):
                _, reply_turn = reply
                for sentence in sentences(reply_turn.text):
                    point = SourcedPoint(text=clip(sentence, POINT_CHARS), turns=[turn.index, reply_turn.index])
                    if _DIFFERENTIATOR.search(sentence.lower()):
                        advantages.append(point)
                    talk_track.append(point)
    items = len(strengths) + len(advantages) + len(landmines)
    confidence = 0.15 if competitor is None else min(0.85, 0.35 + 0.08 * items)
    return BattleCard(
        title=clip(f"Battle card: {competitor}", TITLE_CHARS) if competitor else "Battle card (no competitor named)",
        competitor=competitor,
        their_strengths=_dedupe(strengths),
        our_advantages=_dedupe(advantages),
        landmines=_dedupe(landmines),
        talk_track=_dedupe(talk_track)[:8],
        confidence=round(confidence, 2),
    )


def classify_objection(text: str) -> tuple[ObjectionCategory, float] | None:
    lowered = text.lower().replace("\u2019", "'")
    for category, pattern, confidence in _OBJECTION_RULES:
        if pattern.search(lowered):
            return category, confidence
    # "Does it integrate with Salesforce?" names a tool we connect to, not one the prospect would keep instead.
    if (
        competitors_mentioned(text)
        and re.search(r"\b(?:use|using|have|with)\b", lowered)
        and not _INTEGRATION.search(lowered)
    ):
        return ObjectionCategory.COMPETITOR, 0.55
    return None


def _objection_handler(turns: Sequence[Turn], roles: Roles) -> ObjectionHandler:
    objections: list[Objection] = []
    for position, turn in enumerate(turns):
        if roles.is_internal(turn.speaker):
            continue
        for sentence in sentences(turn.text):
            found = classify_objection(sentence)
            if found is None:
                continue
            category, confidence = found
            reply = _next_turn_of(turns, position, internal=True, roles=roles)
            response = reply[1].text if reply else None
            proof = [clip(s, POINT_CHARS) for s in sentences(response)[:6] if _PROOF.search(s)] if response else []
            cited = [turn.index] + ([reply[1].index] if reply else [])
            confidence += (0.1 if response else -0.2) + (0.05 if proof else 0.0)
            objections.append(
                Objection(
                    objection=clip(sentence, POINT_CHARS),
                    category=category,
                    response=clip(response, DESCRIPTION_CHARS) if response else None,
                    proof_points=proof,
                    turns=cited,
                    confidence=round(min(max(confidence, 0.05), 0.95), 2),
                )
            )
            break
    categories = Counter(o.category.value for o in objections)
    title = "Objection handler: " + (", ".join(c for c, _ in categories.most_common(3)) or "none found")
    return ObjectionHandler(title=title, objections=objections, confidence=_overall([o.confidence for o in objections]))


def _faq(turns: Sequence[Turn], roles: Roles) -> Faq:
    items: list[FaqItem] = []
    seen: set[str] = set()
    for position, turn in enumerate(turns):
        if roles.is_internal(turn.speaker):
            continue
        for sentence in sentences(turn.text):
            lowered = sentence.lower()
            if not sentence.endswith("?") or len(sentence.split()) < 4 or _QUESTION_SMALL_TALK.search(lowered):
                continue
            key = _normal(sentence)
            if key in seen:
                continue
            seen.add(key)
            reply = _next_turn_of(turns, position, internal=True, roles=roles)
            answer = " ".join(sentences(reply[1].text)[:3]) if reply else None
            items.append(
                FaqItem(
                    question=clip(sentence, POINT_CHARS),
                    answer=clip(answer, DESCRIPTION_CHARS) if answer else None,
                    turns=[turn.index] + ([reply[1].index] if reply else []),
                    confidence=0.75 if answer else 0.35,
                )
            )
    title = f"FAQ: {items[0].question}" if items else "FAQ (no questions found)"
    return Faq(title=title[:300], items=items, confidence=_overall([i.confidence for i in items]))


def _playbook(turns: Sequence[Turn], roles: Roles) -> Playbook:
    stages: dict[str, list[SourcedPoint]] = {
        "Opening": [], "Discovery": [], "Qualification": [], "Presentation": [], "Objection handling": [],
        "Next steps": [],
    }  # fmt: skip
    rep_positions = [i for i, t in enumerate(turns) if roles.is_internal(t.speaker)]
    actions = {a.turn_index for a in extract_actions(turns).actions}
    for rank, position in enumerate(rep_positions):
        turn = turns[position]
        previous = turns[position - 1] if position > 0 else None
        after_objection = (
            previous is not None
            and not roles.is_internal(previous.speaker)
            and any(classify_objection(s) for s in sentences(previous.text))
        )
        for sentence in sentences(turn.text):
            lowered = sentence.lower()
            point = SourcedPoint(text=clip(sentence, POINT_CHARS), turns=[turn.index])
            if turn.index in actions and (_FIRST_PERSON.search(lowered) or _LETS.search(lowered)):
                stages["Next steps"].append(point)
            elif after_objection:
                stages["Objection handling"].append(point)
            elif rank == 0 and not sentence.endswith("?"):
                stages["Opening"].append(point)
            else:
                for stage, pattern in _STAGES:
                    if pattern.search(lowered) and (stage != "Discovery" or sentence.endswith("?")):
                        stages[stage].append(point)
                        break
    filled = [PlaybookStage(name=name, steps=_dedupe(points)[:10]) for name, points in stages.items() if points]
    confidence = min(0.8, 0.2 + 0.1 * len(filled)) if filled else 0.1
    return Playbook(title=f"Playbook: {len(filled)} stages from a call", stages=filled, confidence=round(confidence, 2))


def _overall(confidences: Sequence[float]) -> float:
    """A document is as trustworthy as its items; an empty one says so."""
    if not confidences:
        return 0.1
    return round(sum(confidences) / len(confidences) * min(1.0, 0.6 + 0.1 * len(confidences)), 2)


def _normal(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def _dedupe(points: Iterable[SourcedPoint]) -> list[SourcedPoint]:
    seen: dict[str, SourcedPoint] = {}
    for point in points:
        key = _normal(point.text)
        if key in seen:
            merged = sorted(set(seen[key].turns) | set(point.turns))
            seen[key] = seen[key].model_copy(update={"turns": merged})
        else:
            seen[key] = point
    return list(seen.values())
