"""A word-level tokenizer for the course's small language.

PaliGemma uses a 257k-entry SentencePiece vocabulary. Our robots hear a tiny
closed language ("pick up the red cube", "how many cubes are there ?",
"left"), so one token per word is enough. Each word gets its own embedding
row, which makes attention maps and generated text easy to read.

The vocabulary can **grow**. Later chapters add words: FAST action tokens,
subtask names for pi0.5, ``"advantage: positive"`` for RECAP. Ids already
given out never change, so a checkpoint trained on the old vocabulary stays
valid. The model only has to add embedding rows for the new ids (see
``TinyVLM.resize_token_embeddings``).

    >>> tok = WordTokenizer(["pick", "the", "red", "cube"])
    >>> tok.encode("Pick the red cube.", add_bos=True)
    [1, 4, 5, 6, 7, 3]
    >>> tok.decode(tok.encode("pick the red cube"))
    'pick the red cube'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)

# A word is a run of letters, digits, '_', '-' or ':' (so "cube_2" and
# "advantage:" stay whole); any other non-space character is a token by itself.
_WORD_RE = re.compile(r"<[a-z_]+>|[\w:\-]+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Lower-case ``text`` and cut it into word tokens (punctuation stands alone)."""
    return _WORD_RE.findall(text.lower())


class WordTokenizer:
    """Word <-> id map with special tokens ``<pad>=0, <bos>=1, <eos>=2, <unk>=3``.

    Args:
        words: initial vocabulary (added in order, duplicates ignored).
    """

    def __init__(self, words: Iterable[str] = ()):
        self.id_to_word: list[str] = []
        self.word_to_id: dict[str, int] = {}
        for w in SPECIAL_TOKENS:
            self._add(w)
        self.add_words(words)

    # ---- vocabulary -----------------------------------------------------------------
    def _add(self, word: str) -> int:
        if word not in self.word_to_id:
            self.word_to_id[word] = len(self.id_to_word)
            self.id_to_word.append(word)
        return self.word_to_id[word]

    def add_words(self, words: Iterable[str] | str) -> list[int]:
        """Add words (or every word of a sentence) and return their ids.

        Words that already exist keep their id. New words are appended at the
        end, so ids never move.
        """
        if isinstance(words, str):
            words = split_words(words)
        ids = []
        for w in words:
            w = w.lower()
            if not w or any(c.isspace() for c in w):
                raise ValueError(f"a vocabulary entry must be one non-empty word, got {w!r}")
            ids.append(self._add(w))
        return ids

    def add_texts(self, texts: Iterable[str]) -> None:
        """Grow the vocabulary with every word found in ``texts``."""
        for t in texts:
            self.add_words(split_words(t))

    def __len__(self) -> int:
        return len(self.id_to_word)

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_word)

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.word_to_id

    pad_id = property(lambda self: self.word_to_id[PAD])
    bos_id = property(lambda self: self.word_to_id[BOS])
    eos_id = property(lambda self: self.word_to_id[EOS])
    unk_id = property(lambda self: self.word_to_id[UNK])

    # ---- text <-> ids ---------------------------------------------------------------
    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Text -> ids. Words not in the vocabulary become ``<unk>``."""
        ids = [self.word_to_id.get(w, self.unk_id) for w in split_words(text)]
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Iterable[int], skip_special: bool = True, stop_at_eos: bool = True) -> str:
        """Ids -> text, words joined by spaces. Decoding stops at ``<eos>`` by default."""
        words = []
        for i in ids:
            i = int(i)
            if stop_at_eos and i == self.eos_id:
                break
            w = self.id_to_word[i] if 0 <= i < len(self.id_to_word) else UNK
            if skip_special and w in SPECIAL_TOKENS:
                continue
            words.append(w)
        return " ".join(words)

    # ---- checkpoints ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"type": "WordTokenizer", "vocab": list(self.id_to_word)}

    @classmethod
    def from_dict(cls, d: dict) -> WordTokenizer:
        vocab = list(d["vocab"])
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}, got {vocab[:4]}")
        tok = cls()
        for w in vocab[len(SPECIAL_TOKENS):]:
            tok._add(w)
        if tok.id_to_word != vocab:
            raise ValueError("vocabulary has duplicate entries")
        return tok

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={len(self)})"
