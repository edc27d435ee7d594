"""Fact QA pairs: every salient span of every sentence, asked two ways, for a LoRA that stores facts.

The reference recipe's three cloze pairs cover a third of a short passage; a question on any
other fact finds nothing in the LoRA. Here each sentence (pronouns at its start read as the
passage's title) gives one pair per span: names, numbers, dates, colours, what follows
"called"/"named", an unnamed subject ("A bronze otter statue sits ..."), and the end of every
clause. Each is asked as a fill-the-blank sentence and as an in-place question with the word a
reader would use ("which engineer", "which year", "what date", "what colour", "which airport",
"by whom", else "what"), so the LoRA ties the fact to the words around it rather than to one
template; who made or found the subject is also asked question word first ("Which clockmaker
invented X?"). A blank gets one answer: a span that ends a longer one ("October" in "the ninth
of October") is not asked apart, or the LoRA learns a blend of the two. A sentence that says what
its subject is ("Henry Feilden was an English politician") is also asked that way ("Who was Henry
Feilden?"), the question encyclopedic passages about people answer first. Each example keeps at most a few
words either side of its blank: a 300-word table row with no sentence end would otherwise put
every word of it in every example.
No LLM, no gold answers: the test question never leaks into the LoRA."""

from __future__ import annotations

import re
import threading

from engine.corpus import Passage
from engine.offline.cloze import _OPENERS, _SALIENT, _TRAILING, sentences
from engine.offline.records import AugmentFn, AugmentRecord, FailedPassage, QAPair
from engine.offline.sources import light_rewrite

_PRONOUN = re.compile(r"^(It|He|She|They|This|Its|His|Her|Their)\b")
_NAMED = re.compile(r"\b(?:called|named|known as|nicknamed)\s+((?:the\s+)?[\w'’-]+(?:\s+[A-Z][\w'’-]*)*)")
_CLAUSE = re.compile(r"[,;:]\s+")
_PREPOSITIONS = {"under", "over", "near", "between", "among", "across", "through", "beside", "behind", "beyond", "inside", "outside",
                 "within", "without", "against", "along", "around", "until", "upon"}
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(rf"\b(?:the\s+)?(?:\w+\s+of\s+(?:{_MONTHS})|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})|(?:{_MONTHS})\s+\d{{1,2}})\b")
_YEAR = re.compile(r"^(1\d|20)\d\d$")
COLOURS = ("red|orange|yellow|green|blue|purple|violet|pink|brown|black|white|grey|gray|gold|golden|silver|crimson|scarlet|"
           "teal|turquoise|indigo|amber|ochre|maroon|navy|ivory|cream|beige|copper")
_COLOUR = re.compile(rf"(?<![\w-])(?:([a-z]+)\s+)?(?P<colour>{COLOURS})(?:\s+and\s+(?:{COLOURS}))?(?![\w-])")
"""A colour with the word that shades it ("cobalt blue", "forest green"): a fact no capital letter marks."""
_VERBS = ("is|was|are|were|has|had|sits|sat|stands|stood|lies|lay|hangs|hung|rests|remains|rises|rose|runs|ran|shows|showed|"
          "holds|held|guards|guarded")
_NOUN = rf"(?!(?:{_VERBS})\b)[a-z][\w-]*"
_SUBJECT = re.compile(rf"^(?:A|An|The)\s+((?:{_NOUN}\s+){{1,3}}{_NOUN})\s+(?:{_VERBS})\b")
"""A sentence that opens on what it is about, not named: "A bronze otter statue sits on ..." (two words at least)."""
_ROLE_BEFORE = re.compile(r"(?:\b(?:the|a|an)\s+)?\b([a-z][a-z-]+)\s*$")
_FUNCTION_WORDS = {"of", "the", "a", "an", "in", "on", "at", "by", "for", "from", "with", "to", "into", "and", "or", "as",
                   "since", "until", "before", "after", "during",
                   "is", "was", "are", "were", "be", "been", "call", "called", "named", "its", "his", "her", "their",
                   "every", "each", "some", "many", "all", "several", "more", "most", "than", "there"}
_OPENING_PREPOSITIONS = {"at", "in", "on", "by", "for", "from", "with", "after", "before", "during", "since", "when", "while"}
_LEADING = _OPENERS | _PREPOSITIONS
"""Words a capitalised run may open with that are not part of the name ("Under Captain X")."""
_NOT_A_ROLE = _FUNCTION_WORDS | _OPENERS
MAX_SPAN_WORDS = 6
CLAUSE_END_WORDS = 2
WORDS_BEFORE = 30
WORDS_AFTER = 20
"""The most words an example keeps either side of its blank (a clause of ordinary prose fits)."""
_STOP = r"(?:who|whom|which|that|whose|born|best|known|from|in|on|at|for|with|since|during|by|of|but|to)"
_NAME_WORD = r"(?:[A-Z\"“][\w.'’\"”-]*|\d+(?:st|nd|rd|th)|of|de|del|da|van|von|the|al|bin|le|la)"
_PARTICIPLE = (
    r"(?:\w+ed|built|spoken|known|made|written|run|set|found|sold|grown|kept|held|sung|begun"
    r"|first|also|now|still|once|often|closest|nearest)"
)
"""Words that end a description when they follow it ("a festival held ...", "a mineral first found ...")."""
_DEFINITION = re.compile(
    rf"^(?P<subject>[A-Z]\S*(?:,?\s+{_NAME_WORD}){{0,7}}?)[\s,]*(?:\([^)]*\)[\s,]*)?\s(?P<be>is|was|are|were)\s+(?:an?|the)\s+"
    rf"(?P<what>(?!(?:{_STOP}|first)\b)[\w'’-]+(?:\s+(?!(?:{_STOP}|and|or|{_PARTICIPLE})\b)[\w'’-]+){{0,5}}?)"
    rf"(?=\s*$|\s*[,;:(]|\s+(?:{_STOP}|and|or|{_PARTICIPLE})\b)")
""""X (dates) was an English Conservative Party politician, ...": what the subject is, up to the first clause break."""
_PERSON_SUFFIXES = ("er", "or", "ist", "ian", "ess", "man", "woman", "eur", "ier")
_PERSON_WORDS = {"student", "president", "agent", "merchant", "servant", "lieutenant", "sergeant", "representative", "detective",
                 "missionary", "secretary", "architect", "pilot", "patriot", "nominee", "trustee", "saint", "chef", "judge",
                 "monk", "nun", "poet", "priest", "bishop", "king", "queen", "prince", "princess", "knight", "lord", "duke", "model"}
_NOT_PERSON = {"tower", "liner", "river", "water", "center", "centre", "number", "letter", "chapter", "order", "quarter",
               "border", "corner", "computer", "paper", "summer", "winter", "mirror", "sector", "factor", "harbor", "monitor",
               "motor", "reactor", "tractor", "vector", "anchor", "color", "colour", "theater", "theatre", "manor", "corridor",
               "interior", "exterior", "cluster", "charter", "register", "carrier", "barrier", "flyer"}


def resolve_opening(sentence: str, title: str) -> str:
    """"It was founded ..." -> "Velmora was founded ...": the fact keeps its subject once cut from the passage."""
    if not title:
        return sentence
    match = _PRONOUN.match(sentence)
    if match is None:
        return sentence
    word = match.group(1)
    subject = f"{title}'s" if word in ("Its", "His", "Her", "Their") else title
    return subject + sentence[match.end():]


def spans(sentence: str, title: str) -> list[tuple[int, int]]:
    """Character spans worth asking for, in sentence order, without the title itself or repeats."""
    body = _TRAILING.sub("", sentence)
    found: list[tuple[int, int]] = []
    for match in _SALIENT.finditer(body):
        start, words = match.start(), match.group(0).split()
        while words and words[0].lower() in _LEADING and len(words) > 1:  # "Under Captain X" -> "Captain X"
            start = body.index(words[1], start + len(words[0]))
            words = words[1:]
        if start == 0 and not words[0][:1].isdigit():
            continue  # the sentence's subject: usually the title
        stop = start + len(_TRAILING.sub("", body[start:match.end()]))
        found.append((start, stop))
        owner = body.find(" of ", start, stop)
        if owner > start:  # "Petronella Vask of Brennoch Vale": the person alone is a fact too
            found.append((start, owner))
    for match in _DATE.finditer(body):
        found.append((match.start(), match.end()))
    for match in _NAMED.finditer(body):
        found.append((match.start(1), match.end(1)))
    for match in _COLOUR.finditer(body):
        shade = match.group(1)
        # "a red fox": the article is not part of the colour
        start = match.start("colour") if shade and shade in _FUNCTION_WORDS | _OPENERS else match.start()
        found.append((start, match.end()))
    subject = _SUBJECT.match(body)
    if subject is not None:
        found.append((subject.start(1), subject.end(1)))
    for clause in _clause_ends(body):
        found.append(clause)
    seen: set[str] = set()
    kept: list[tuple[int, int]] = []
    for start, end in sorted(found, key=lambda span: (span[0], -span[1])):
        text = body[start:end].strip()
        key = text.lower()
        if not text or key in seen or (title and key in title.lower()) or len(text.split()) > MAX_SPAN_WORDS:
            continue
        if any(a < start and end == b for a, b in kept):
            continue  # "October" ending "the ninth of October": two answers to one blank teach a blend
        seen.add(key)
        kept.append((start, end))
    return kept


def clauses(body: str) -> list[tuple[int, int]]:
    """(start, stop) of each clause of a sentence: the text between commas, semicolons and colons."""
    bounds = []
    start = 0
    for match in _CLAUSE.finditer(body):
        bounds.append((start, match.start()))
        start = match.end()
    bounds.append((start, len(body)))
    return bounds


def _clause_ends(body: str) -> list[tuple[int, int]]:
    """The last words of each clause: where "is painted saffron yellow" keeps its point."""
    ends = []
    for index, (start, stop) in enumerate(clauses(body)):
        if index == 0 and stop < len(body) and body[start:stop].split()[0].lower() in _PREPOSITIONS | _OPENING_PREPOSITIONS:
            continue  # "At the end of the night, ...": how the sentence begins, not a fact of it
        words = list(re.finditer(r"\S+", body[start:stop]))
        if len(words) >= 3:
            tail = words[max(0, len(words) - CLAUSE_END_WORDS):]
            if len(words) >= 4 and words[-2].group(0) in ("and", "or"):  # "teal and orange": both sides are the fact
                tail = words[-3:]
            while tail and tail[0].group(0).lower() in _FUNCTION_WORDS:
                tail = tail[1:]
            if tail:
                ends.append((start + tail[0].start(), start + tail[-1].end()))
    return ends


_KINDS = {"airport", "abbey", "bay", "bridge", "castle", "cathedral", "caves", "cave", "church", "college", "company", "island",
          "islands", "lake", "mount", "mountain", "mountains", "museum", "observatory", "port", "river", "sea", "sound", "station",
          "street", "university", "valley", "forest", "hills", "railway", "harbour", "square", "gate", "tower", "palace", "canal"}
"""Words that say what kind of place a name is ("Pennequin Airport", "Lake Ombrith"): its "which" noun."""


def definition_pair(body: str, sentence: str) -> QAPair | None:
    """"Henry Feilden was an English Conservative Party politician" -> ("Who was Henry Feilden?",
    "English Conservative Party politician"): the description a "what is X's occupation" question needs.
    People only: asked of a place or a thing, the description became the answer to every question on it."""
    match = _DEFINITION.match(body)
    if match is None:
        return None
    what = match.group("what")
    if what[:1].isdigit() or what.lower() in _FUNCTION_WORDS:
        return None
    head = what.split()[-1].lower()
    if head not in _PERSON_WORDS and (not head.endswith(_PERSON_SUFFIXES) or head in _NOT_PERSON):
        return None  # "What is Velmora?" "hill town" drew every what-question about Velmora to "hill town"
    return QAPair(f"Who {match.group('be')} {match.group('subject').rstrip(',')}?", what, sentence)


def window(clause: str, start: int, end: int) -> tuple[str, str]:
    """The words before and after a span, at most WORDS_BEFORE and WORDS_AFTER of them."""
    before = clause[:start].split(" ")
    after = clause[end:].split(" ")
    before = before[-WORDS_BEFORE - 1:] if len(before) > WORDS_BEFORE + 1 else before
    after = after[: WORDS_AFTER + 1] if len(after) > WORDS_AFTER + 1 else after
    return " ".join(before).rstrip(), " ".join(after).strip()


_TRAILING_ARTICLE = re.compile(r"(?:^|\s+)(?:the|a|an)$")


def _kind_of(answer: str) -> str:
    words = answer.split()
    if len(words) < 2 or not words[0][:1].isupper():
        return ""
    for word in (words[-1], words[0]):
        if word.lower() in _KINDS:
            return "mountain" if word.lower() == "mount" else word.lower()
    return ""


_AGENT = re.compile(r"\b([a-z]+(?:ed|en)|built|led|made|wrote|drew|found)\s+(?:in\s+\d{3,4}\s+)?by(?:\s+the\s+([a-z][a-z-]+))?\s*$")
_PAST = {"written": "wrote", "drawn": "drew", "sung": "sang", "begun": "began", "given": "gave", "taken": "took", "chosen": "chose",
         "driven": "drove", "shown": "showed", "known": "knew", "seen": "saw", "beaten": "beat"}


def agent_question(before: str, title: str) -> str | None:
    """"Tallowmark ... invented in 1953 by the schoolteacher ___" -> "Which schoolteacher invented Tallowmark?".

    Who made, founded or found a thing is what people ask most, and they ask it with the
    question word first; the in-place phrasing alone leaves that form far from anything trained.
    """
    match = _AGENT.search(before)
    if match is None or not title:
        return None
    verb = _PAST.get(match.group(1), match.group(1))
    who = f"Which {match.group(2)}" if match.group(2) and match.group(2) not in _NOT_A_ROLE else "Who"
    return f"{who} {verb} {title}?"


def wh_phrase(before: str, answer: str) -> str:
    """The text before the answer, ending in the question word a reader would use for it.

    "designed by the engineer" + a name -> "designed by which engineer"; "founded in" + 1638 ->
    "founded in which year"; "held on what date", "painted what colour"; otherwise "... what".
    """
    if before.lower() in ("", "a", "an", "the"):
        return "What"  # the sentence's subject: "A ___ sits on the parapet" -> "What sits on the parapet"
    if _COLOUR.fullmatch(answer):
        return f"{before} what colour"
    kind = _kind_of(answer)
    if kind:  # "Pennequin Airport" -> "at which airport"
        return f"{_TRAILING_ARTICLE.sub('', before)} which {kind}".strip()
    if before.endswith(" by") and answer[:1].isupper():
        return f"{before} whom"
    role = _ROLE_BEFORE.search(before)
    noun = role.group(1) if role is not None else ""
    if noun and answer[:1].isupper() and noun not in _NOT_A_ROLE and not noun.endswith(("ed", "ing", "ly")):
        return f"{before[: role.start()]}which {noun}".strip()
    if _YEAR.match(answer):
        return f"{before} which year"
    if _DATE.fullmatch(answer):
        return f"{before} what date"
    return f"{before} what"


def fact_pairs(passage: Passage) -> list[QAPair]:
    """Two pairs (a blank and a question) per span of every sentence, each asked within the span's clause,
    a third, question word first, for who made or found the passage's subject, and what the subject is."""
    pairs: list[QAPair] = []
    definitions: list[QAPair] = []
    agents: set[str] = set()
    for raw in sentences(passage.text):
        sentence = resolve_opening(raw, passage.title)
        body = _TRAILING.sub("", sentence)
        bounds = clauses(body)
        for start, end in spans(sentence, passage.title):
            answer = body[start:end].strip()
            # Only the clause that holds the answer: a shorter example (cheaper) that keeps the fact's own words.
            first = max(left for left, _ in bounds if left <= start)
            last = min((right for _, right in bounds[:-1] if right >= end), default=len(body))
            lead = re.match(r"(?:and|but|or|so)\s+", body[first:last])
            first += lead.end() if lead and lead.end() <= start - first else 0
            clause = body[first:last]
            before, after = window(clause, start - first, end - first)
            if after and after[0] not in ",;:":
                after = " " + after
            named = passage.title and passage.title.lower() in clause.lower()
            about = f"About {passage.title}: " if passage.title and not named else ""
            before = before[:1].upper() + before[1:] if not about else before
            pairs.append(QAPair(f"{about}{before} ___{after}.".strip(), answer, sentence))
            pairs.append(QAPair(f"{about}{wh_phrase(before, answer)}{after}?".strip(), answer, sentence))
            agent = agent_question(body[:start].rstrip(), passage.title) if answer[:1].isupper() else None
            if agent is not None and agent not in agents:  # one answer per question: the longest span, asked first
                agents.add(agent)
                pairs.append(QAPair(agent, answer, sentence))
        definition = definition_pair(body, sentence)
        if definition is not None and definition.question not in agents:
            agents.add(definition.question)
            definitions.append(definition)
    # The first description leads: a long passage trains on a spread of its pairs that starts there.
    return definitions[:1] + pairs + definitions[1:]


def facts_source(min_qa: int = 2) -> AugmentFn:
    """Fact pairs and the light rewrite; a passage with fewer than `min_qa` pairs fails."""

    def run(passage: Passage, cancel: threading.Event | None) -> AugmentRecord | FailedPassage:
        pairs = fact_pairs(passage)
        if len(pairs) < min_qa:
            return FailedPassage(passage, f"{len(pairs)} fact question(s) in this passage (need {min_qa})")
        return AugmentRecord(passage, light_rewrite(passage.text), pairs)

    return run
