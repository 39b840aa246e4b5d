"""Deterministic bulk content for the benchmark data sets.

Source-like text that compresses roughly like real code, log lines, and
half-sparse binary. Everything comes from a ``random.Random`` passed in, and
bulk bytes are made by joining pre-built lines or by ``Random.randbytes``,
never by a per-byte Python loop.
"""

from __future__ import annotations

import random
import time

MODULES = 30
LINES_PER_MODULE = 2_000
GLOBAL_IDENTIFIERS = 4_000
LOCAL_IDENTIFIERS = 150
LOG_MESSAGES = 3_000
LOG_LINES_PER_SECOND = 40

KEYWORDS = (
    "def", "return", "if", "else", "elif", "for", "while", "in", "not", "and",
    "or", "import", "from", "class", "self", "None", "True", "False", "try",
    "except", "raise", "with", "as", "yield", "lambda", "const", "let", "var",
    "function", "int", "char", "void", "struct", "static", "unsigned", "fn",
    "pub", "mut", "impl", "match", "switch", "case", "break", "continue",
)
PUNCTUATION = (
    "(", ")", "=", "==", "!=", "+", "-", "*", "/", ",", ":", ".", "{", "}",
    "[", "]", "->", "=>", ";", "<", ">", "+=", "&&", "||", "0", "1", "2",
    "\"\"", "''", "None", "[]", "{}", "()",
)
SYLLABLES = (
    "ba", "co", "de", "fi", "ga", "hu", "ji", "ka", "lo", "me", "nu", "po",
    "qui", "ra", "si", "tu", "ve", "wa", "xe", "yo", "za", "ent", "ion", "er",
    "al", "ing", "ed", "or", "ic", "at", "un", "re", "pre", "con", "dis",
)
LOG_LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "INFO", "WARN", "ERROR")
LOG_VERBS = ("started", "finished", "retrying", "accepted", "closed", "queued",
             "skipped", "loaded", "flushed", "timed out", "refused", "synced")


def make_identifiers(rng: random.Random, count: int) -> list[str]:
    """Invent ``count`` identifiers from syllables, snake_case or camelCase."""
    identifiers = []
    for _ in range(count):
        parts = rng.choices(SYLLABLES, k=rng.randint(2, 6))
        if rng.random() < 0.3:
            name = parts[0] + "".join(p.capitalize() for p in parts[1:])
        else:
            cut = rng.randint(1, len(parts))
            name = "".join(parts[:cut]) + ("_" + "".join(parts[cut:]) if cut < len(parts) else "")
        identifiers.append(name)
    return identifiers


def make_line(rng: random.Random, tokens: list[str]) -> bytes:
    """One indented source-like line: code, a comment, an assignment or blank."""
    roll = rng.random()
    if roll < 0.07:
        return b"\n"
    indent = "    " * rng.choice((0, 1, 1, 2, 2, 2, 3, 3, 4, 5))
    words = rng.choices(tokens, k=rng.randint(2, 14))
    if roll < 0.17:
        text = f"{indent}# {' '.join(w for w in words if w.isidentifier())}"
    elif roll < 0.22:
        text = f"{indent}{words[0]} = {rng.randint(0, 1 << 20)}"
    else:
        text = f"{indent}{' '.join(words)}"
    return (text + "\n").encode()


def make_modules(rng: random.Random, count: int = MODULES) -> list[list[bytes]]:
    """Build ``count`` pools of lines; each pool shares a local set of names.

    Drawing a file's lines from one module gives it the repetition of real
    code (the same few names over and over), so it compresses like source.
    """
    identifiers = make_identifiers(rng, GLOBAL_IDENTIFIERS)
    base_tokens = list(KEYWORDS) * 4 + list(PUNCTUATION) * 6
    modules = []
    for _ in range(count):
        tokens = base_tokens + rng.sample(identifiers, LOCAL_IDENTIFIERS) * 3
        modules.append([make_line(rng, tokens) for _ in range(LINES_PER_MODULE)])
    return modules


def text_bytes(rng: random.Random, modules: list[list[bytes]], size: int) -> bytes:
    """Return exactly ``size`` bytes of text made of lines from one random module."""
    pool = rng.choice(modules)
    average_line = 40
    parts: list[bytes] = []
    produced = 0
    while produced < size:
        batch = rng.choices(pool, k=(size - produced) // average_line + 8)
        chunk = b"".join(batch)
        parts.append(chunk)
        produced += len(chunk)
    return b"".join(parts)[:size]


def sparse_binary_bytes(rng: random.Random, size: int) -> bytes:
    """Return ``size`` bytes alternating random 512 B records and zero padding."""
    record, padding = 512, bytes(512)
    count = size // (2 * record) + 1
    noise = rng.randbytes(count * record)
    blocks = (noise[i * record:(i + 1) * record] + padding for i in range(count))
    return b"".join(blocks)[:size]


def make_log_messages(rng: random.Random, count: int = LOG_MESSAGES) -> list[str]:
    """Messages a service might log: a level, a component, a verb, some fields."""
    names = make_identifiers(rng, 200)
    messages = []
    for _ in range(count):
        fields = " ".join(f"{rng.choice(names)}={rng.randint(0, 99_999)}" for _ in range(rng.randint(0, 4)))
        messages.append(f"{rng.choice(LOG_LEVELS):5} [{rng.choice(names)}] "
                        f"{rng.choice(names)} {rng.choice(LOG_VERBS)} {fields}".rstrip() + "\n")
    return messages


def log_bytes(rng: random.Random, messages: list[str], size: int, start: int) -> tuple[bytes, int]:
    """Return (exactly ``size`` bytes of timestamped log lines from ``start``
    (Unix seconds), the second after the last line), so a later append goes
    on where this one ended."""
    parts: list[str] = []
    produced = 0
    second = start
    while produced < size:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        lines = rng.choices(messages, k=LOG_LINES_PER_SECOND)
        block = "".join(f"{stamp}.{i * 25:03d}Z {line}" for i, line in enumerate(lines))
        parts.append(block)
        produced += len(block)
        second += 1
    return "".join(parts).encode()[:size], second
