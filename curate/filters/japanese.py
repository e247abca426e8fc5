"""Japanese text rules the quality filter applies: how a sentence ends, and how much of an answer repeats.

Truncation is a property of grammar, not of punctuation: machine-translated and crowd-written
answers often end a complete sentence without 。 (…に就任しています / …存在だった), while a cut-off
answer stops on a particle, a continuative form or a comma (…世界でも有数の / …ことができ).
The last word of the last sentence is read with fugashi (unidic-lite part of speech and
conjugation form).

Repetition follows Gopher (Rae et al. 2021): the share of sentences that repeat an earlier
one, the share of characters in them, and the share of characters covered by repeated
character n-grams; sentences, not lines, because Japanese prose keeps many sentences on
one line.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from curate.text.char_ngrams import char_codes, coefficients, window_hashes

# a line whose last character is one of these ends complete (punctuation, closing brackets, emphasis marks)
SENTENCE_END = "。．.！？!?」』）)】〉》〕］]…‥〜~ー♪☆★✨！:：;；"
LETTER_CLOSINGS = ("敬具", "謹白", "敬白", "草々", "かしこ", "以上")
# lists, tables, headings: items legitimately stop on a noun or a particle-less fragment
LIST_ITEM = re.compile(r"^\s*(?:[-*・•●◆■▶→]|\d+[.)．、]|[①-⑳]|#|\|)")
MIN_PROSE_CHARS = 15
JAPANESE = re.compile(r"[\u3041-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
# a sentence ends after a run of 。！？ (「本当に!!!」 is one sentence, not four)
SENTENCES = re.compile(r"(?<=[。！？!?])(?![。！？!?])|\n")
WORD = re.compile(r"\w")
URL = re.compile(r"https?://\S+|www\.\S+")
# a label line (「画像の数:23」), a slash-separated list (「曲名 / 歌手 / 1964年」), an attribution after a
# dash (「…手放せません。」- 満足した顧客より) is not a sentence
NOT_PROSE = re.compile(r"[:：]|\s/\s|^\W*[-—―]\s")

# お/ご + a noun + に closing an answer after a finished sentence (お楽しみに, お大事に, ご参考に): a set
# phrase whose verb is left unsaid, not a sentence cut at its particle
CLOSING_FORMULA = re.compile(r"[おご][^\s、。!！?？]{1,6}に[!！]?")

# conjugation forms after which a sentence is finished
_FINAL_FORMS = ("終止形", "命令形", "意志推量形")
# particles that end a noun phrase or a sentence: よ, ね, か (終助詞); など, まで, だけ (副助詞); の (準体助詞)
_FINAL_PARTICLES = ("終助詞", "副助詞", "準体助詞")

_tagger = None


def _tag(text: str) -> list:
    """fugashi words of ``text``; the tagger is created once per process (workers re-import this module)."""
    global _tagger
    if _tagger is None:
        import fugashi

        _tagger = fugashi.Tagger()
    return list(_tagger(text))


_OPENING = {"「": "」", "『": "』", "（": "）", "(": ")", "【": "】", "〈": "〉", "《": "》", "〔": "〕"}
_CLOSED_SENTENCE = re.compile(r"[。．！？!?]")


def open_bracket(text: str) -> str | None:
    """「 not closed, when ``text`` opens a bracket it never closes (a cut inside a quotation or a citation)."""
    for opening, closing in _OPENING.items():
        if text.count(opening) > text.count(closing):
            return f"{opening} not closed"
    return None


def last_sentence_open(line: str) -> str | None:
    """Why the last sentence of ``line`` is unfinished (its last word and part of speech), or None.

    Unfinished: it stops on a case, binding or conjunctive particle, a continuative or other
    non-final conjugation, a conjunction, a prefix or a comma; or it leaves a bracket open; or,
    in a line whose earlier sentences end in 。, it stops on a bare noun or adverb (a cut word).
    A verb, adjective or auxiliary in its final form ends a sentence, with or without 。.

    >>> last_sentence_open("彼は二〇一〇年に社長に就任しています") is None
    True
    >>> last_sentence_open("東京は日本の首都です。人口は約1400万人で、世界でも有数の")
    'の/助詞-格助詞'
    >>> last_sentence_open("英語を話すことができ")
    'でき/動詞-連用形-一般'
    >>> last_sentence_open("甘やかすと、結局はその人のためにならない、という")
    'という/quotative without its noun'
    >>> last_sentence_open("2回目は「東京2020大会")
    '「 not closed'
    >>> last_sentence_open("地球の引力が届かなくなるので、人工衛星はそ。これは重要です。人工衛星はそ")
    'そ/副詞 after closed sentences'
    """
    stripped = line.rstrip()
    if URL.search(stripped[-80:]) and not URL.sub("", stripped[-80:]).strip(" )）>]"):
        return None  # ends on a link
    stripped = URL.sub("URL", stripped)
    ends = list(_CLOSED_SENTENCE.finditer(stripped))
    last_sentence = stripped[ends[-1].end():] if ends else stripped
    opened = open_bracket(last_sentence)
    if opened:
        return opened
    if NOT_PROSE.search(last_sentence):
        return None
    if ends and CLOSING_FORMULA.fullmatch(last_sentence.strip()):
        return None  # 「…焼く。お楽しみに」: a closing formula after a finished sentence
    if not JAPANESE.search(last_sentence):  # an English sentence, a formula: not ours to parse
        return None
    words = [w for w in _tag(last_sentence[-60:]) if w.feature.pos2 != "空白"]
    if not words:
        return None
    last = words[-1]
    pos1, pos2, form = last.feature.pos1, last.feature.pos2, last.feature.cForm or ""
    if pos1 in ("補助記号", "記号"):  # a closing quote, an emoticon; a comma leaves the sentence open
        return f"{last.surface}/読点" if pos2 == "読点" and not stripped.endswith("、、") else None
    if pos1 == "助詞":
        if pos2 in _FINAL_PARTICLES or _softened_ending(words):
            return None
        return f"{last.surface}/助詞-{pos2}"
    if _softened_ending(words):
        return None
    if pos1 in ("動詞", "形容詞", "助動詞"):
        # 「…という」: the quotative と + いう announces a noun that never comes
        if last.feature.lemma in ("言う", "いう") and len(words) > 1 and words[-2].surface == "と":
            return "という/quotative without its noun"
        if form.startswith(_FINAL_FORMS):
            return None
        return f"{last.surface}/{pos1}-{form}"
    if pos1 in ("接続詞", "接頭辞") or pos2 == "フィラー":
        return f"{last.surface}/{pos1}"
    if pos1 == "感動詞":  # うふふ, はい, ありがとう
        return None
    if ends:  # the line's other sentences are closed; this one stops on a noun, adverb or pronoun
        return f"{last.surface}/{pos1} after closed sentences"
    return None  # a one-sentence line on a noun or adverb: 体言止め, short answers


# 言いさし: a finished clause softened by a conjunctive particle (…ですけど / …ますが / …ないので), which
# conversation and polite answers use as an ending
_SOFTENERS = ("けど", "けれど", "けれども", "が", "から", "し")


def _is_final_predicate(word) -> bool:
    return word.feature.pos1 in ("動詞", "形容詞", "助動詞") and (word.feature.cForm or "").startswith(_FINAL_FORMS)


def _softened_ending(words: list) -> bool:
    """…ですけど, …ますが, …だから, …ないし; …なので / …んで (の/ん + で after a finished clause).

    >>> _softened_ending(_tag("今日は雨なんですけど"))
    True
    >>> _softened_ending(_tag("明日は早いので"))
    True
    >>> _softened_ending(_tag("東京へ行って"))
    False
    """
    last = words[-1]
    if last.surface == "も" and len(words) > 1 and words[-2].surface == "か":  # …かも (= かもしれない)
        return True
    if last.feature.pos2 == "接続助詞" and last.surface in _SOFTENERS:
        return len(words) > 1 and _is_final_predicate(words[-2])
    if last.surface in ("で", "に") and len(words) > 2 and words[-2].surface in ("の", "ん"):
        before = words[-3]
        return before.feature.pos1 in ("動詞", "形容詞", "助動詞") and (before.feature.cForm or "").startswith(
            _FINAL_FORMS + ("連体形",))
    return False


def ends_mid_sentence(output: str, min_chars: int = 40) -> str | None:
    """Why the answer's last prose line stops mid-sentence, or None when it ends complete.

    Truncation is what a generation or translation cut at its token limit leaves, so only
    answers of ``min_chars`` or more are read: shorter ones (chat turns, span answers) end
    in ellipses, inversions and fragments on purpose. Code, lists, tables, headings, letter
    closings and hashtags end without a sentence legitimately.

    >>> ends_mid_sentence("東京は日本の首都です。", min_chars=0)
    >>> ends_mid_sentence("候補:\\n- 東京タワーに登る", min_chars=0)
    >>> ends_mid_sentence("人に情けをかけて甘やかすと、結局はその人のためにならない、という", min_chars=0)
    'という/quotative without its noun'
    >>> ends_mid_sentence("楽しかったですね涼しいところで") is None  # a short chat turn: not read
    True
    """
    if "```" in output or len(output.strip()) < min_chars:
        return None
    lines = [line.strip() for line in output.rstrip().split("\n") if line.strip()]
    last = lines[-1]
    # short last lines are labels, signatures and answers (「答え:3600円」, 「サンタクロースより」)
    if len(last) < MIN_PROSE_CHARS or last[-1] in SENTENCE_END:
        return None
    if LIST_ITEM.match(last):  # a list item or table row ends on a noun legitimately
        return item_open(last.split("。")[-1], [line for line in lines[:-1] if LIST_ITEM.match(line)])
    if last.endswith(LETTER_CLOSINGS) or "#" in last[-12:]:
        return None
    if is_verse(lines):
        return verse_line_open(last)
    return last_sentence_open(last)


def item_open(item: str, earlier_items: list[str] = ()) -> str | None:
    """Why a list's last item is cut off, or None. An item may end on a bare noun. One that leaves a bracket
    open is cut, unless other items of the list leave theirs open too: translation drops closing brackets
    all through a list (「1.シャーロットの網（E.B.ホワイト著」 … 「10.…（原題：The Tale of Despereaux」),
    and then only bracketed words that stop mid-sentence are a cut.

    >>> item_open("5.スザンヌ・コリンズ著「ハンガー・ゲーム", ["4.ポーラ・ホーキンス著「ガール・オン・ザ・トレイン"]) is None
    True
    >>> item_open("-K-POP Group BTS（防弾", ["- スパイダーマン（マーベル映画から）"])
    '（ not closed'
    >>> item_open("- 彼が言ったのは「明日は東京に", ["- 「今日は晴れ"])
    '「 not closed, に/助詞-格助詞'
    """
    opened = open_bracket(item)
    if not opened:
        return None
    if not any(open_bracket(other) for other in earlier_items):
        return opened
    inner = item[item.rfind(opened[0]) + 1:]
    why = last_sentence_open(inner) if inner.strip() else "empty"
    return f"{opened}, {why}" if why else None


def is_verse(lines: list[str]) -> bool:
    """A poem, lyrics or a list written line by line: four or more lines, short, most of the lines before the
    last ending without 。！？ (a verse line is not a sentence).

    >>> is_verse(["春の息吹、桜のカーペット", "古都を染め上げるピンクの波", "静かな寺の縁で、時間が囁く",
    ...           "静かな雪景色、時の流れを凍らせるように"])
    True
    >>> is_verse(["東京は日本の首都です。", "人口は多いです。", "交通も便利です。", "ただし物価が"])
    False
    """
    if len(lines) < 4:
        return False
    body = [line for line in lines[:-1] if not LIST_ITEM.match(line)]
    if len(body) < 3:
        return False
    open_lines = sum(1 for line in body if line[-1] not in SENTENCE_END)
    return open_lines >= 0.75 * len(body) and sorted(map(len, body))[len(body) // 2] <= 30


def verse_line_open(line: str) -> str | None:
    """Why the last line of a verse is cut off, or None. A verse line may end on a particle or a continuative
    form (「時の流れを凍らせるように」, 「冒険の旅に、トイ・ストーリーは」); only what no line of verse ends on
    is a cut: a comma, a prefix, an open bracket.

    >>> verse_line_open("静かな雪景色、時の流れを凍らせるように") is None
    True
    >>> verse_line_open("何か追加や修正が必要な点がありましたら、お")
    'お/接頭辞'
    """
    why = last_sentence_open(line)
    return why if why and (why.endswith(("/読点", "/接頭辞")) or "not closed" in why) else None


@dataclass(frozen=True)
class Repetition:
    """Gopher-style repetition measures of one answer."""

    sentences: int
    duplicate_sentence_fraction: float  # sentences equal to an earlier one / sentences
    duplicate_sentence_char_fraction: float  # characters in those / characters in all sentences
    repeated_ngram_char_fraction: float  # characters covered by a character n-gram seen twice or more


def may_repeat(text: str, min_sentences: int, ngram_min_chars: int) -> bool:
    """False where ``repetition(text)`` cannot reach a limit: fewer than ``min_sentences`` sentences
    (each split needs a line break or one of 。！？!?, so they bound the count) and too short for the
    n-gram measure. A few ``str.count`` calls instead of a sentence split per answer.

    >>> may_repeat("はい。そうです。", 4, 200), may_repeat("はい。" * 4, 4, 200), may_repeat("あ" * 200, 4, 200)
    (False, True, True)
    """
    if len(text) >= ngram_min_chars:
        return True
    splits = text.count("\n") + sum(text.count(end) for end in "。！？!?")
    return splits + 1 >= min_sentences


def repetition(text: str, n: int = 20, ngram_min_chars: int = 200, requested: str = "") -> Repetition:
    """Repetition measures of ``text`` (sentences split after 。！？ and at line breaks).

    A sentence found in ``requested`` (the prompt) does not count as a duplicate: a prompt may
    ask for it to be repeated.

    >>> r = repetition("おすすめです。" * 12)
    >>> r.sentences, round(r.duplicate_sentence_fraction, 2)
    (12, 0.92)
    >>> repetition("今日は晴れです。明日は雨です。").duplicate_sentence_fraction
    0.0
    >>> repetition("こんにちは\\n" * 10, requested="「こんにちは」を10回表示して").duplicate_sentence_fraction
    0.0
    """
    # fragments without a letter (a run of 。。。 or !!! split off) are not sentences
    sentences = [s.strip() for s in SENTENCES.split(text) if s and WORD.search(s)]
    seen: set[str] = set()
    dup = dup_chars = total_chars = 0
    for s in sentences:
        total_chars += len(s)
        if s in seen and s not in requested:
            dup += 1
            dup_chars += len(s)
        seen.add(s)
    return Repetition(
        sentences=len(sentences),
        duplicate_sentence_fraction=dup / len(sentences) if sentences else 0.0,
        duplicate_sentence_char_fraction=dup_chars / total_chars if total_chars else 0.0,
        repeated_ngram_char_fraction=repeated_ngram_fraction(text, n, ngram_min_chars),
    )


def repeated_ngram_fraction(text: str, n: int = 20, ngram_min_chars: int = 200) -> float:
    """``repetition(text).repeated_ngram_char_fraction``: the share of ``text``'s characters (whitespace
    removed) inside a character n-gram that occurs twice or more; 0 below ``ngram_min_chars``.

    >>> repeated_ngram_fraction("あいうえおかきくけこさしすせそたちつてと。" * 12)
    1.0
    """
    compact = "".join(text.split())
    # short answers repeat a phrase by design (parallel clauses, 「こんにちは」 ten times when asked)
    if len(compact) < ngram_min_chars or not _compresses_well(compact):
        return 0.0
    return _repeated_ngram_coverage(compact, n)


def has_equal_sentences(text: str) -> bool:
    """Whether two of ``text``'s sentences are equal. False: ``repetition``'s sentence measures are 0
    (its sentences are these pieces, less those without a letter, and a duplicate must equal an
    earlier one), so only its n-gram measure is left to compute. A set of pieces instead of the
    letter test and the counting loop: a third of the time, and almost no answer repeats a sentence
    (146 of 26,600 in the 60k benchmark input).

    >>> has_equal_sentences("はい。はい。"), has_equal_sentences("はい。\\n\\nいいえ。"), has_equal_sentences("")
    (True, False, False)
    """
    pieces = [s for s in map(str.strip, SENTENCES.split(text)) if s]
    return len(set(pieces)) < len(pieces)


def _compresses_well(text: str, below: float = 0.5) -> bool:
    """A cheap gate before the n-gram coverage: a text with half its characters inside repeated
    20-character n-grams compresses (zlib, UTF-8) far below 0.5, since LZ77 stores each repeat
    as a back-reference. Measured on 7,128 real answers of 200+ characters: the two with coverage
    above 0.5 compress to 0.12; 5.8% of all pass the gate."""
    raw = text.encode("utf-8")
    return len(zlib.compress(raw)) < below * len(raw)


_COEFFS = coefficients(20)


def _repeated_ngram_coverage(text: str, n: int) -> float:
    """Share of characters inside some character n-gram that occurs at least twice.

    Vectorised: each n-gram gets a 64-bit polynomial hash (numpy, wrapping arithmetic), the
    repeated hashes mark their windows, a running sum turns window starts into coverage.

    >>> round(_repeated_ngram_coverage("あいうえおかきくけこ" * 3, 10), 2)
    1.0
    >>> _repeated_ngram_coverage("あいうえおかきくけこさしすせそたちつてとなにぬねの", 10)
    0.0
    """
    if len(text) < 2 * n:
        return 0.0
    codes = char_codes(text)
    hashes = window_hashes(codes, n, _COEFFS)
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    starts = (counts[inverse] > 1).astype(np.int32)
    if not starts.any():
        return 0.0
    # character i is covered when some window starting in (i - n, i] repeats
    cover = np.convolve(starts, np.ones(n, dtype=np.int32))[: len(codes)]
    return float((cover > 0).sum() / len(codes))
