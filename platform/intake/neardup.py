"""Near-duplicate requests: the same request pasted again with other numbers, names or layout.

A pure module (datasketch, numpy and the standard library), used at triage (each case stores
its signature and band keys; candidates are the cases sharing a key, kept when their estimated
Jaccard reaches THRESHOLD) and by the dataset build (`clusters`).

What counts as a duplicate. The same task on the same input, up to numbers, personal names,
punctuation, spacing, full-width forms, politeness ("请", "谢谢", "please") and small edits.
A different task on the same input (translate into Japanese instead of English) or the same
task on a different input (another paragraph to summarise) is a different request. The first
of those is beyond a character-level sketch when the shared input is long: such pairs are in
the labelled set as non-duplicates, and they are among the false positives below.

Normalisation (`normalize`), in this order:

    NFKC          full-width letters, digits and "，：？（）" become ASCII; run on the whole
                  text (we need no offsets back into it, unlike intake.pii)
    casefold      "Python" = "python"
    numbers       every run of digits, with "." "," ":" "/" between digits ("1,234.5", "3/4",
                  "12:30"), becomes one "0", and so does an English number name or a run of
                  them ("thirty-seven", "a hundred and five" keeps its "a"); Chinese numerals
                  stay, because the Han characters they are made of ("一下", "统一") carry
                  words too, and every Han character is kept
    deleted       whitespace, punctuation (Unicode P*), controls and format characters (Z*, C*);
                  symbols (S*: "+", "=", "$", emoji) stay, they are content in math and code
    "00" -> "0"   numbers that became neighbours once the separators went ("1, 2, 3")

Whitespace is deleted rather than collapsed: Chinese has no word spaces, and whether a space
sits between Han and Latin ("用 Python 写" / "用Python写") is a typing habit. English loses its
word boundaries, but n-grams that span a boundary are still specific to the phrase.

Shingles are the character n-grams of the normalised text, UTF-8 encoded. A text shorter than
n is one shingle, the whole text, so a 2-character Chinese request still has a signature and
matches its own copies (text-dedup drops such records; we must not). A text that normalises
to nothing is the single empty shingle.

Signatures: datasketch MinHash, NUM_PERM permutations with a fixed seed (datasketch's
default "affine32" scheme, SHA-1 of each shingle), i.e. NUM_PERM uint32 values, 4 bytes each
when stored. Band keys: LSH with the bands b and rows r that datasketch.MinHashLSH chooses for
(THRESHOLD, NUM_PERM) with the weights LSH_WEIGHTS (b=23, r=5 at the values below); each key
is a 64-bit BLAKE2b of (band index, the band's values) as a signed integer, so that it fits a
BigIntegerField and is the same on every machine and process (Python's hash() is salted per
process). Changing NGRAM, NUM_PERM, SEED or the normalisation invalidates stored signatures
and keys; SCHEME names them, for stored rows to say which they were made with.

Calibration (bench/neardup_calibrate.py on tests/web/fixtures/neardup_eval.jsonl: 371 pairs,
183 duplicates and 188 hard non-duplicates, 197 Chinese, 95 English, 79 mixed, 10-527
characters; every figure is in bench/results/neardup-calibration-2026-12-02.json). A pair is
called a duplicate when the estimated Jaccard is >= THRESHOLD; n = 2..7, thresholds 0.30..0.90
in steps of 0.05:

                                      estimated Jaccard           exact Jaccard
    chosen      n=3, threshold 0.60   P 0.895  R 0.885  F1 0.890  P 0.901  R 0.891  F1 0.896
    runner-up   n=4, threshold 0.55   P 0.901  R 0.847  F1 0.873  P 0.891  R 0.853  F1 0.872

Through the band keys, 94.0% of the duplicates become candidates and 87.4% are found (candidate
and >= THRESHOLD; precision 0.894); MinHashLSH's default weights would find 83.1%. clusters()
takes about 3 s for 10,000 requests of 100-400 characters on a 2-core machine (2.5-6 s
when other jobs share it), nearly all of it SHA-1 and MinHash; 1,000 of 1,000 planted
near-copies were joined.

Bigrams (n=2) score best on the set (F1 0.923 at 0.65: P 0.893, R 0.956) and are rejected:
their vocabulary saturates on long Latin-script text. Disjoint 3,000-20,000-character chunks
of our own docs (English with code) estimate 0.61-0.70 similar at n=2 (up to 0.82), against
0.24-0.43 at n=3, where the most similar unrelated long pair measured is at 0.50; a case may
hold 20,000 characters. The bench admits (n, threshold) only when no unrelated long pair
reaches the threshold.

What the misses and false positives are (at the chosen values): the misses are short Chinese
requests reworded in two or three places ("孩子三年级" / "孩子上三年级", "应该" / "该"), each
edit costing n shingles out of a dozen or two; the false positives are requests that differ in
the one word that makes the task ("唐朝" / "宋朝", "horizontally" / "vertically") and a
different task on the same long input, which no character-level sketch can tell apart.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH

NGRAM: int = 3  # calibrated: see the module docstring
THRESHOLD: float = 0.6
NUM_PERM: int = 128
SEED: int = 1202
# MinHashLSH's weights on (spurious, missed) candidates when it picks bands and rows. Its default
# (0.5, 0.5) gives b=18, r=7 at 0.6, which makes only 40% of the pairs whose Jaccard is exactly the
# threshold candidates (1 - (1 - 0.6**7)**18). Verification throws spurious candidates away but
# nothing recovers a missed one, so misses weigh more: (0.2, 0.8) gives b=23, r=5: 0.85 at the
# threshold, 0.94 at 0.65, while a pair at Jaccard 0.2 is a candidate 0.7% of the time.
LSH_WEIGHTS: tuple[float, float] = (0.2, 0.8)
# Stored alongside signatures and band keys (the keys depend on the threshold and weights too):
# rows made with other settings must be recomputed.
SCHEME = f"minhash-affine32-sha1-n{NGRAM}-p{NUM_PERM}-s{SEED}-norm1-t{THRESHOLD}-w{LSH_WEIGHTS[1]}"

_DTYPE = np.dtype("<u4")  # affine32 hash values, little-endian on every machine when stored

# --- normalisation -----------------------------------------------------------------------

_NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty", "forty",
    "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "million", "billion",
]
_NUMBER_WORD = "(?:" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + ")"
# "thirty-seven", "one hundred and five": one number, one "0".
_WORD_NUMBER = re.compile(rf"\b{_NUMBER_WORD}(?:(?:[\s-]+|\s+and\s+){_NUMBER_WORD})*\b")
_DIGITS = re.compile(r"\d+(?:[.,:/]\d+)*")
_ZEROS = re.compile(r"0{2,}")


class _Deletions(dict):
    """A str.translate table that deletes whitespace, punctuation, controls and format characters.

    Filled on first sight of each character, so no table of all 1.1M code points is built.
    """

    def __missing__(self, codepoint: int) -> int | None:
        kept = unicodedata.category(chr(codepoint))[0] not in "PZC"
        self[codepoint] = value = codepoint if kept else None
        return value


_DELETIONS = _Deletions()


def normalize(text: str) -> str:
    """The text that shingles are cut from (see the module docstring for each step)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _WORD_NUMBER.sub("0", text)
    text = _DIGITS.sub("0", text)
    text = text.translate(_DELETIONS)
    return _ZEROS.sub("0", text)


def shingles(text: str, *, n: int = NGRAM) -> set[bytes]:
    """Character n-grams of normalize(text), UTF-8; a text shorter than n is one shingle."""
    if n < 1:
        raise ValueError("n must be at least 1")
    norm = normalize(text)
    if len(norm) <= n:
        return {norm.encode("utf-8")}
    return {norm[i : i + n].encode("utf-8") for i in range(len(norm) - n + 1)}


# --- signatures --------------------------------------------------------------------------


@functools.cache
def _template(num_perm: int) -> MinHash:
    # Drawing the permutations is the costly part of MinHash(); every signature reuses these.
    return MinHash(num_perm=num_perm, seed=SEED)


def _minhash(items: Iterable[bytes], num_perm: int) -> MinHash:
    template = _template(num_perm)
    minhash = MinHash(num_perm=num_perm, seed=SEED, permutations=template.permutations, scheme=template.scheme)
    minhash.update_batch(items)
    return minhash


def signature(text: str, *, n: int = NGRAM, num_perm: int = NUM_PERM) -> np.ndarray:
    """The MinHash of the text's shingles: `num_perm` uint32 values."""
    return _minhash(shingles(text, n=n), num_perm).hashvalues.astype(_DTYPE)


def signatures(texts: Iterable[str], *, n: int = NGRAM, num_perm: int = NUM_PERM) -> list[np.ndarray]:
    """signature() of each text."""
    return [signature(text, n=n, num_perm=num_perm) for text in texts]


def signature_to_bytes(sig: np.ndarray) -> bytes:
    """4 bytes per value, little-endian (512 bytes at NUM_PERM=128)."""
    return np.asarray(sig, dtype=_DTYPE).tobytes()


def signature_from_bytes(data: bytes) -> np.ndarray:
    if len(data) % _DTYPE.itemsize:
        raise ValueError(f"a signature is a whole number of {_DTYPE.itemsize}-byte values, got {len(data)} bytes")
    return np.frombuffer(data, dtype=_DTYPE).copy()  # a writable array, not a view of `data`


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity: the share of positions where the two signatures agree."""
    if len(a) != len(b):
        raise ValueError(f"signatures of different lengths: {len(a)} and {len(b)}")
    return float(np.count_nonzero(np.asarray(a) == np.asarray(b))) / len(a)


# --- LSH ---------------------------------------------------------------------------------


@functools.cache
def lsh_params(
    threshold: float = THRESHOLD, num_perm: int = NUM_PERM, weights: tuple[float, float] = LSH_WEIGHTS
) -> tuple[int, int]:
    """(bands, rows per band) as datasketch.MinHashLSH picks them for these weights (see LSH_WEIGHTS).

    Cached: the search integrates the S-curve for every (b, r)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def band_keys(sig: np.ndarray, *, threshold: float = THRESHOLD, num_perm: int = NUM_PERM) -> list[int]:
    """One signed 64-bit key per LSH band; texts sharing a key are candidate duplicates."""
    if len(sig) != num_perm:
        raise ValueError(f"a signature of {len(sig)} values, expected {num_perm}")
    bands, rows = lsh_params(threshold, num_perm)
    values = np.asarray(sig, dtype=_DTYPE)
    keys = []
    for band in range(bands):
        digest = hashlib.blake2b(struct.pack("<H", band), digest_size=8)
        digest.update(values[band * rows : (band + 1) * rows].tobytes())
        keys.append(int.from_bytes(digest.digest(), "little", signed=True))
    return keys


# --- clusters ----------------------------------------------------------------------------


class UnionFind:
    """Disjoint sets over 0..n-1; the smaller root wins a union, so a set's label is its smallest member."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def links(sigs: np.ndarray, *, groups: Sequence[object] | None = None, threshold: float = THRESHOLD
          ) -> tuple[UnionFind, dict[int, tuple[int, float]]]:
    """Join the signatures (rows of `sigs`) that share a band key and whose estimated Jaccard is >= threshold.

    Members of one group (`groups[i]`, e.g. the examples of one request) are never compared
    with each other. Returns the sets and, for each member that joined an earlier one, (that
    member, their similarity): what a person is shown as the reason. The grouping does not
    depend on the order of the rows (only labels do): a pair skipped because its members are
    already joined could only have joined them.
    """
    buckets: defaultdict[int, list[int]] = defaultdict(list)
    for i, sig in enumerate(sigs):
        for key in band_keys(sig, threshold=threshold):
            buckets[key].append(i)
    sets, joined = UnionFind(len(sigs)), {}
    for members in buckets.values():
        # A bucket already one set (a request pasted a hundred times) costs one pass, not a hundred.
        if len(members) < 2 or len({sets.find(i) for i in members}) == 1:
            continue
        for pos, i in enumerate(members[:-1]):
            # Compare i with the later members not already in its set, all at once.
            others = [j for j in members[pos + 1:] if sets.find(j) != sets.find(i)
                      and (groups is None or groups[j] != groups[i])]
            if not others:
                continue
            agree = np.count_nonzero(sigs[others] == sigs[i], axis=1) / sigs.shape[1]
            for j, sim in zip(others, agree.tolist(), strict=True):
                if sim >= threshold and sets.find(j) != sets.find(i):
                    sets.union(i, j)
                    joined[j] = (i, sim)
    return sets, joined


def clusters(texts: Sequence[str], *, n: int = NGRAM, threshold: float = THRESHOLD) -> list[int]:
    """A cluster label per text: the index of the first text of its cluster (the connected
    components of `links`)."""
    sigs = np.array(signatures(texts, n=n), dtype=_DTYPE).reshape(len(texts), NUM_PERM)
    sets, _ = links(sigs, threshold=threshold)
    return [sets.find(i) for i in range(len(texts))]
