"""Recognise redelivered records by their key ``(device, t, quantity, ref)`` (see ``Batch.keys``).

Each key is remembered as a 62-bit hash in an ``ingest.keyset.KeySet``: a fixed hash table with a ring
of the same hashes in arrival order, which forgets the oldest once ``max_keys`` are held. Memory is fixed
when the deduper is made and the same for every key, whatever made it: 24-40 bytes (the default bound of
2,000,000 keys takes 48 MB), so a sensor's reading, a record of a SenML pack and a unit's acknowledgement
of an alert id never seen before all cost the same, and nothing grows past the bound (issue 13 measured
357 bytes per sensor key and 1.4 KB per unique acknowledged alert id with the per-stream memory this
replaced).

The hash: BLAKE2b (8 bytes) of ``device``, ``quantity`` and ``ref`` (cached per stream), mixed with the
64 bits of ``t`` by the SplitMix64 finaliser (Steele, Lea and Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014), kept to 62 bits, never 0. Two different keys share a hash with
probability about n / 2^62 per look-up (5e-13 with 2,000,000 keys held): such a record would be counted
as a duplicate. The hash is stable across processes (no use of Python's salted ``hash``), so a snapshot
keeps the hashes themselves.

``seen_one`` and ``all_seen`` look without remembering: the admission step asks them first, so a
redelivered message is known as a duplicate before it is charged to the rate limit.

The dedupe memory also carries the admission step's per-device rate state (``rates``, an
``ingest.validation.RateLimiter``): both are what the admission step remembers of the messages so far, and
a snapshot of the one (``save_state``, key ``rates``) restores both, so a replay after a restart decides
exactly as the live loop did.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING

import numpy as np

from ingest.batch import Batch
from ingest.keyset import KeySet

if TYPE_CHECKING:
    from ingest.validation import RateLimiter

Stream = tuple[str, str, str]
HASH_BITS = 62
"""Bits of a key's hash (an int64 table holds them; 0 marks an empty slot)."""
HASH_SCHEME = "blake2b8-splitmix64-62"
"""Names the hash in a snapshot; a snapshot with another (or none: the older per-stream form) is rehashed."""
STREAM_CACHE = 65_536
"""Stream hashes kept for reuse [stream] (those without a ``ref``: a device's quantity); the cache is emptied
when full, so it stays bounded."""

_MASK64 = (1 << 64) - 1
_MASK = (1 << HASH_BITS) - 1
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_PACK_T = struct.Struct("<d")
_UNPACK_BITS = struct.Struct("<Q")


def stream_hash(device: str, quantity: str, ref: str = "") -> int:
    """64-bit BLAKE2b digest of a stream ``(device, quantity, ref)``.

    A lone surrogate (JSON text may carry one, e.g. an ack's ``"\\ud800"``) is hashed as its own code point
    (``surrogatepass``): never an error, and two different texts never share their bytes."""
    text = f"{device}\x1f{quantity}\x1f{ref}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def key_hash(stream: int, t: float) -> int:
    """Hash of one key from its stream's hash and its time [s] (the scalar form of `key_hashes`)."""
    bits = _UNPACK_BITS.unpack(_PACK_T.pack(t + 0.0))[0]  # + 0.0: -0.0 and 0.0 are the same time
    z = (stream + bits * _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return ((z ^ (z >> 31)) & _MASK) or 1


def key_hashes(streams: np.ndarray, t: np.ndarray) -> np.ndarray:
    """`key_hash` of many keys at once: ``streams`` (uint64) and ``t`` [s] of equal length; int64 out."""
    bits = (np.asarray(t, dtype=np.float64) + 0.0).view(np.uint64)
    with np.errstate(over="ignore"):
        z = streams.astype(np.uint64) + bits * np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    z = ((z ^ (z >> np.uint64(31))) & np.uint64(_MASK)).astype(np.int64)
    z[z == 0] = 1
    return z


class Deduper:
    """Remembers the keys of the last ``max_keys`` accepted records (oldest first forgotten).

    Parameters
    ----------
    max_keys : int
        Memory bound [record]; a redelivery older than this many records is not recognised.
    rates : RateLimiter or None
        The admission step's rate state, saved and restored with the keys (see the module docstring).
    """

    def __init__(self, max_keys: int = 2_000_000, rates: RateLimiter | None = None) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.rates = rates
        self._stream_cache: dict[Stream, int] = {}
        self._last_batch: Batch | None = None  # the last batch hashed, and its hashes
        self._last_hashes = np.zeros(0, dtype=np.int64)
        self._probe: tuple[str, float, str, str, int] | None = None  # the last key hashed, and its hash
        self._reset(max_keys)

    def _reset(self, max_keys: int) -> None:
        self.max_keys = int(max_keys)
        self._keys = KeySet(self.max_keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def nbytes(self) -> int:
        """The key memory's size [byte] (fixed by ``max_keys``)."""
        return self._keys.nbytes

    # ------------------------------------------------------------ hashing
    def _stream(self, device: str, quantity: str, ref: str) -> int:
        if ref:  # a unit's ack of one alert: a stream seldom seen twice, not worth a cache entry
            return stream_hash(device, quantity, ref)
        key = (device, quantity, ref)
        h = self._stream_cache.get(key)
        if h is None:
            if len(self._stream_cache) >= STREAM_CACHE:
                self._stream_cache.clear()
            h = self._stream_cache[key] = stream_hash(device, quantity, ref)
        return h

    def _hashes(self, batch: Batch) -> np.ndarray:
        """The hash of every record of a non-empty batch, in order (int64). The last batch's are kept: the
        admission step asks ``all_seen`` and then ``filter`` of the same batch."""
        if self._last_batch is batch:
            return self._last_hashes
        distinct, codes = _streams(batch)
        if codes is None:
            streams = np.full(len(batch), self._stream(*distinct[0]), dtype=np.uint64)
        else:
            streams = np.array([self._stream(*stream) for stream in distinct], dtype=np.uint64)[codes]
        self._last_batch, self._last_hashes = batch, key_hashes(streams, batch.t)
        return self._last_hashes

    def _one(self, device: str, t: float, quantity: str, ref: str) -> int:
        """The hash of one key; the last one is kept (``seen_one`` and then ``remember_one`` of the same key)."""
        probe = self._probe
        if probe is not None and probe[1] == t and probe[0] == device and probe[2] == quantity and probe[3] == ref:
            return probe[4]
        h = key_hash(self._stream(device, quantity, ref), float(t))
        self._probe = (device, t, quantity, ref, h)
        return h

    # ------------------------------------------------------------ looking and remembering
    def filter(self, batch: Batch) -> tuple[Batch, int]:
        """Rows of ``batch`` not seen before (also within the batch), and the number of duplicates."""
        n = len(batch)
        if n == 0:
            return batch, 0
        if n == 1:
            return self._filter_one(batch)
        hashes = self._hashes(batch)
        if n <= self.max_keys:
            keep = self._keys.add(hashes)  # one pass; "seen before" is as of the start of the batch
        else:  # alone it overflows the memory: the new rows (first of each key) as of the start, then held
            fresh = np.flatnonzero(~self._keys.held(hashes))
            fresh = fresh[np.sort(np.unique(hashes[fresh], return_index=True)[1])]
            keep = np.zeros(n, dtype=bool)
            keep[fresh] = True
            self._keys.add_new(hashes[fresh])
        if keep.all():
            return batch, 0
        return batch.take(keep), int(n - keep.sum())

    def seen_one(self, device: str, t: float, quantity: str, ref: str = "") -> bool:
        """Whether one record's key is remembered (remembers nothing)."""
        return self._keys.holds(self._one(device, t, quantity, ref))

    def all_seen(self, batch: Batch) -> bool:
        """Whether every record of a non-empty ``batch`` is remembered: the message is a redelivery
        (remembers nothing)."""
        if len(batch) == 0:
            return False
        if len(batch) == 1:
            return self.seen_one(batch.device[0], float(batch.t[0]), batch.quantity[0], batch.ref[0])
        return self._keys.holds_all(self._hashes(batch))

    def _filter_one(self, batch: Batch) -> tuple[Batch, int]:
        if self.admit_one(batch.device[0], float(batch.t[0]), batch.quantity[0], batch.ref[0]):
            return batch, 0
        return batch.take(np.zeros(1, dtype=bool)), 1

    def admit_one(self, device: str, t: float, quantity: str, ref: str = "") -> bool:
        """Remember one record's key; False if it was already remembered (a duplicate)."""
        return self._keys.add_one(self._one(device, t, quantity, ref))

    def remember_one(self, device: str, t: float, quantity: str, ref: str = "") -> None:
        """Remember one record's key that ``seen_one`` has just said is new (`admit_one`, its answer unused)."""
        self.admit_one(device, t, quantity, ref)

    # ------------------------------------------------------------ snapshots
    def save_state(self) -> dict:
        """The remembered keys' hashes, oldest first (``hashes``, int64), with ``max_keys``, the hash scheme
        and, when there is one, the rate state (``rates``)."""
        rates = {} if self.rates is None else {"rates": self.rates.save_state()}
        return rates | {"max_keys": int(self.max_keys), "scheme": HASH_SCHEME, "hashes": self._keys.oldest_first()}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave (on an empty deduper); a snapshot of the older per-stream form (times
        per stream) is rehashed. The rate state is restored into ``rates`` when both have one (a snapshot from
        before issue 13 has none: the buckets start full)."""
        if self.rates is not None and "rates" in state:
            self.rates.restore_state(state["rates"])
        self._reset(int(state["max_keys"]))
        if str(state.get("scheme", "")) == HASH_SCHEME:
            hashes = np.asarray(state["hashes"], dtype=np.int64)
        else:
            hashes = self._rehash_streams(state)
        self._keys.add(hashes)

    def _rehash_streams(self, state: dict) -> np.ndarray:
        """The hashes, oldest first, of a snapshot in the per-stream form: ``device``, ``quantity``, ``ref`` per
        stream, ``entry_stream`` and ``entry_len`` per remembered group, and all ``times``."""
        streams = np.array([self._stream(d, q, r) for d, q, r in zip(
            state["device"].tolist(), state["quantity"].tolist(), state["ref"].tolist(), strict=True)],
            dtype=np.uint64)
        per_time = np.repeat(np.asarray(state["entry_stream"], dtype=np.int64), state["entry_len"])
        if len(per_time) == 0:
            return np.zeros(0, dtype=np.int64)
        return key_hashes(streams[per_time], state["times"])


def _streams(batch: Batch) -> tuple[list[Stream], np.ndarray | None]:
    """The distinct streams of a non-empty batch, in order of first appearance, and for each row the index of its
    own (None when all rows are of the first), built with C-level maps, not a loop over rows."""
    dev, q, ref = batch.device, batch.quantity, batch.ref
    first = (dev[0], q[0], ref[0])
    if len(batch) == 1 or (_uniform(dev) and _uniform(q) and _uniform(ref)):
        return [first], None
    keys = list(zip(dev.tolist(), q.tolist(), ref.tolist(), strict=True))
    distinct = list(dict.fromkeys(keys))
    index = {stream: i for i, stream in enumerate(distinct)}
    return distinct, np.fromiter(map(index.__getitem__, keys), dtype=np.intp, count=len(keys))


def _uniform(column: np.ndarray) -> bool:
    """Whether every value of a string column equals its first (``list.count`` compares the same object by
    identity first: several times faster than an object array's ``==``)."""
    values = column.tolist()
    return values.count(values[0]) == len(values)
