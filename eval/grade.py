"""Grading prompts: ELYZA-tasks-100 criteria (1-5, with the reference and the aspect) and
MT-Bench single-answer grading (1-10, per turn). The judge backends of the scoring stage read
the score from the probabilities of the score tokens, never from free text."""

from __future__ import annotations

ELYZA_PROMPT_VERSION = "elyza-grade-v1"
MT_BENCH_PROMPT_VERSION = "mt-bench-single-v1"
ELYZA_CHOICES = ("1", "2", "3", "4", "5")
MT_BENCH_CHOICES = tuple(str(i) for i in range(1, 11))

ELYZA_GRADE = """あなたは採点者です。問題、正解例、採点基準、回答が与えられます。回答を1〜5の整数で採点してください。

基本的な採点基準（ELYZA-tasks-100）:
1点: 誤っている、指示に従えていない
2点: 誤っているが、方向性は合っている
3点: 部分的に誤っている、部分的に合っている
4点: 合っている
5点: 役に立つ
基本的な減点項目: 不自然な日本語は -1点、部分的に事実と異なる内容を述べている（ハルシネーション）は -1点、
すべて英語で回答しているなど日本語を使っていない場合は最低点。問題固有の採点基準を優先してください。

# 問題
{question}

# 正解例
{reference}

# 問題固有の採点基準
{aspect}

# 回答
{answer}

点数（数字1文字のみ）:"""

MT_BENCH_GRADE = """[指示]
公平な審査員として、以下のユーザーの質問に対するAIアシスタントの応答の質を評価してください。有用性、関連性、正確性、深さ、創造性、詳細さを考慮し、応答は日本語であるべきです。{reference_note}1から10の整数で採点してください。

{conversation}

評価するのは応答 {turn} です。点数:"""


def elyza_prompt(question: str, reference: str, aspect: str, answer: str) -> str:
    return ELYZA_GRADE.format(question=question, reference=reference or "（なし）", aspect=aspect or "（なし）",
                              answer=answer)


def mt_bench_prompt(turns: list[str], answers: list[str], turn: int, reference: list[str]) -> str:
    parts = []
    for i in range(turn + 1):
        parts.append(f"[ユーザーの質問 {i + 1}]\n{turns[i]}\n\n[アシスタントの応答 {i + 1}]\n{answers[i]}")
    note = ""
    if reference and len(reference) > turn:
        note = "参考解答と比べて正確性を判断してください。"
        parts.append(f"[参考解答 {turn + 1}]\n{reference[turn]}")
    return MT_BENCH_GRADE.format(reference_note=note, conversation="\n\n".join(parts), turn=turn + 1)
