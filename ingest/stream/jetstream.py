"""``JetStream``: the stream interface (``ingest.stream.base``) on NATS JetStream, for synchronous callers.

nats-py is asyncio; the ingest thread and the district twins are plain threads. A ``JetStream`` therefore runs
its own event loop in a private daemon thread and every method hands one coroutine to it and waits for the
result with a timeout (``asyncio.run_coroutine_threadsafe``). One hop per ``flush`` and per ``read``, not per
record: ``publish`` only appends to a bounded local list.

Layout: one JetStream stream (``stream``, default ``TWIN``) takes the subjects ``<subject_prefix>>``; partition
``p`` is the subject ``<subject_prefix>p`` (``twin.batches.310101``). Sequence numbers are the stream's. Records
are kept ``max_age_s`` (24 h) and deduplicated by their ``Nats-Msg-Id`` header within ``duplicate_window_s``.
That window must be longer than a worker restart takes (docs/guides/ingest-workers.md): a batch re-published
after the window is stored twice (district twins drop the duplicate records by their dedupe key).

* ``flush`` publishes the queued records with ``publish_async`` (pipelined: one round trip for all) and waits
  for every PubAck. A timeout cancels the waits and raises ``StreamTimeoutError`` naming how many were acknowledged
  and whether the connection is up; publishing the same message ids again is safe.
* ``read`` keeps one ephemeral pull consumer per partition (``deliver_policy: by_start_sequence``,
  ``ack_policy: none``, removed by the server after ``INACTIVE_S`` unused) and moves it only when the caller
  asks for another position than the one after its last read. Measured against direct gets in
  benchmarks/stream.py.
* Connection loss: nats-py reconnects in the background (forever, ``RECONNECT_WAIT_S`` apart) and buffers
  publishes meanwhile; waits end at their timeouts with a ``StreamTimeoutError`` that says the connection is down.
  A server that cannot be reached when the ``JetStream`` is created raises ``StreamError`` at once.

Threads: ``publish`` and ``flush`` belong to one thread (a flush returns the acks of everything queued before it,
whoever queued it); ``read`` and ``last_seq`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, DiscardPolicy, StorageType, StreamConfig

from ingest.stream.base import Ack, Record, StreamError, StreamTimeoutError, check_msg_id, check_partition

log = logging.getLogger(__name__)

T = TypeVar("T")
MSG_ID = "Nats-Msg-Id"
MAX_UNFLUSHED = 100_000
"""Records that may be published and not yet flushed [1]; more raise ``StreamError`` (flush first)."""
INACTIVE_S = 300.0
"""An idle read consumer is removed by the server after this long [s]."""
RECONNECT_WAIT_S = 0.5
"""Pause between reconnect attempts [s]."""
MARGIN_S = 2.0
"""Extra time the calling thread gives the loop thread beyond an operation's own timeout [s]."""


class JetStream:
    """A JetStream stream seen through the ``Stream`` interface; see the module docstring.

    Parameters
    ----------
    url : str
        ``nats://host:4222`` (several comma-separated for a cluster).
    stream : str
        JetStream stream name.
    subject_prefix : str
        Partition ``p`` is subject ``subject_prefix + p``; ends with ``.``.
    max_age_s : float
        How long records are kept [s].
    duplicate_window_s : float
        How long message ids are remembered for deduplication [s] (<= ``max_age_s``).
    replicas : int
        Copies of the stream in a cluster (3 survives the loss of one server).
    connect_timeout_s, request_timeout_s : float
        Bound of the first connection and of management requests (stream info, consumers) [s].
    name : str
        Connection name shown in the server's monitoring.
    """

    def __init__(self, url: str = "nats://127.0.0.1:4222", stream: str = "TWIN", subject_prefix: str = "twin.batches.",
                 max_age_s: float = 86400.0, duplicate_window_s: float = 600.0, *, replicas: int = 1,
                 connect_timeout_s: float = 5.0, request_timeout_s: float = 5.0, name: str = "citytwin") -> None:
        if not subject_prefix.endswith(".") or any(c in subject_prefix for c in " *>"):
            raise ValueError(f"subject_prefix must end with '.' and hold no ' ', '*' or '>', got {subject_prefix!r}")
        if not 0 < duplicate_window_s <= max_age_s:
            raise ValueError(f"need 0 < duplicate_window_s <= max_age_s, got {duplicate_window_s}, {max_age_s}")
        self.url, self.stream, self.subject_prefix = url, stream, subject_prefix
        self.max_age_s, self.duplicate_window_s, self.replicas = max_age_s, duplicate_window_s, replicas
        self.request_timeout_s = request_timeout_s
        self.connected = threading.Event()
        self._closing = False
        self.disconnected_since: float | None = None
        self._lock = threading.Lock()
        self._unflushed: list[tuple[str, bytes, dict[str, str]]] = []
        self._readers: dict[str, tuple[Any, int]] = {}  # partition -> (pull subscription, seq of its last record)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"jetstream-{stream}", daemon=True)
        self._thread.start()
        try:
            self._nc = self._call(self._connect(url, name, connect_timeout_s), connect_timeout_s)
        except BaseException:
            self._stop_loop()
            raise
        self._js = self._nc.jetstream(timeout=request_timeout_s)

    # -- the loop thread -----------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run ``coro`` on the loop thread; wait at most ``timeout_s`` + ``MARGIN_S`` [s]."""
        if self._loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise StreamError("the JetStream connection is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s + MARGIN_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise StreamTimeoutError(f"NATS at {self.url} did not answer within {timeout_s + MARGIN_S:g} s "
                                f"({self._connection_state()})") from None

    async def _connect(self, url: str, name: str, timeout_s: float) -> Any:
        async def disconnected() -> None:
            if not self.connected.is_set() or self._closing:
                return  # a failed first attempt or our own close, not a lost connection
            self.connected.clear()
            self.disconnected_since = time.time()
            log.warning("disconnected from NATS at %s; reconnecting in the background", url)

        async def reconnected() -> None:
            self.connected.set()
            self.disconnected_since = None
            log.info("reconnected to NATS at %s", url)

        async def error(exc: Exception) -> None:
            log.debug("NATS client error: %s", exc)

        try:
            nc = await nats.connect(url.split(","), name=name, connect_timeout=max(1, round(timeout_s)),
                                    allow_reconnect=True, max_reconnect_attempts=1,
                                    reconnect_time_wait=RECONNECT_WAIT_S, disconnected_cb=disconnected,
                                    reconnected_cb=reconnected, error_cb=error)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            raise StreamError(f"cannot connect to NATS at {url}: {exc or type(exc).__name__}") from None
        nc.options["max_reconnect_attempts"] = -1  # the first connection tries each server twice; later, forever
        self.connected.set()
        return nc

    def _connection_state(self) -> str:
        if self.connected.is_set():
            return "connected"
        since = self.disconnected_since
        ago = f" for {time.time() - since:.1f} s" if since else ""
        return f"not connected{ago}; nats-py is reconnecting"

    # -- the interface -------------------------------------------------------------------------------

    @property
    def max_bytes(self) -> int:
        """Largest record the server takes [byte] (its ``max_payload``, 1 MiB unless configured)."""
        return int(self._nc.max_payload)

    def subject(self, partition: str) -> str:
        """The NATS subject of ``partition``."""
        return self.subject_prefix + check_partition(partition)

    def ensure(self, partitions: Iterable[str] = ()) -> None:
        """Create the stream (subjects ``<prefix>>``) if it is missing; check the partition names; an existing
        stream that does not take the prefix raises ``StreamError``."""
        for p in partitions:
            check_partition(p)
        self._call(self._ensure(), self.request_timeout_s)

    async def _ensure(self) -> None:
        wanted = self.subject_prefix + ">"
        try:
            info = await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            config = StreamConfig(name=self.stream, subjects=[wanted], max_age=self.max_age_s,
                                  duplicate_window=self.duplicate_window_s, storage=StorageType.FILE,
                                  num_replicas=self.replicas, discard=DiscardPolicy.OLD)
            try:
                await self._js.add_stream(config)
            except nats.js.errors.BadRequestError:  # created meanwhile by another worker: check it below
                info = await self._js.stream_info(self.stream)
            else:
                log.info("created JetStream stream %s (subjects %s, max age %g s, duplicate window %g s)",
                         self.stream, wanted, self.max_age_s, self.duplicate_window_s)
                return
        except nats.errors.Error as exc:
            raise StreamError(f"JetStream stream {self.stream}: {exc}") from None
        subjects = info.config.subjects or []
        if wanted not in subjects:
            raise StreamError(f"JetStream stream {self.stream} exists with subjects {subjects}, not {wanted}")
        window = info.config.duplicate_window or 0.0
        if abs(window - self.duplicate_window_s) > 1e-3:
            log.warning("JetStream stream %s has a duplicate window of %g s, not the %g s asked for (kept)",
                        self.stream, window, self.duplicate_window_s)

    def publish(self, partition: str, data: bytes, msg_id: str, headers: Mapping[str, str] | None = None) -> None:
        """Queue a record; ``flush`` sends it and waits for its acknowledgement."""
        item = (self.subject(partition), bytes(data), {**(headers or {}), MSG_ID: check_msg_id(msg_id)})
        size = len(item[1]) + sum(len(k) + len(v) + 4 for k, v in item[2].items()) + 12  # NATS/1.0 header block
        if size > self.max_bytes:
            raise StreamError(f"a record of {size} bytes is larger than the server's max_payload ({self.max_bytes})")
        with self._lock:
            if len(self._unflushed) >= MAX_UNFLUSHED:
                raise StreamError(f"{MAX_UNFLUSHED} records published and not flushed: flush first")
            self._unflushed.append(item)

    def flush(self, timeout_s: float) -> list[Ack]:
        """Send the queued records and wait up to ``timeout_s`` [s] for their PubAcks (publish order)."""
        with self._lock:
            pending, self._unflushed = self._unflushed, []
        if not pending:
            return []
        return self._call(self._publish_all(pending, timeout_s), timeout_s)

    async def _publish_all(self, items: list[tuple[str, bytes, dict[str, str]]], timeout_s: float) -> list[Ack]:
        deadline = self._loop.time() + timeout_s
        futures: list[asyncio.Future] = []
        try:
            for subject, data, headers in items:
                left = max(deadline - self._loop.time(), 0.001)
                futures.append(await self._js.publish_async(subject, data, headers=headers, wait_stall=left))
            _, waiting = await asyncio.wait(futures, timeout=max(deadline - self._loop.time(), 0.0))
        except nats.js.errors.TooManyStalledMsgsError:
            waiting = {f for f in futures if not f.done()}
        except nats.errors.Error as exc:
            _cancel(futures)
            raise StreamError(f"publish to NATS at {self.url} failed: {exc} ({self._connection_state()})") from None
        if waiting:
            _cancel(futures)
            acked = sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)
            raise StreamTimeoutError(f"JetStream acknowledged {acked} of {len(items)} records within {timeout_s:g} s "
                                f"({self._connection_state()}); publish them again with the same ids")
        return [self._ack(subject, f) for (subject, _, _), f in zip(items, futures, strict=True)]

    def _ack(self, subject: str, future: asyncio.Future) -> Ack:
        exc = future.exception()
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            raise StreamError(f"no JetStream stream takes {subject} (call ensure first)")
        if exc is not None:
            raise StreamError(f"JetStream refused a record on {subject}: {exc}")
        ack = future.result()
        return Ack(subject[len(self.subject_prefix):], int(ack.seq), bool(ack.duplicate))

    def read(self, partition: str, after_seq: int, max_n: int, timeout_s: float) -> list[Record]:
        """Up to ``max_n`` records of ``partition`` after ``after_seq``; waits up to ``timeout_s`` [s] for one."""
        subject = self.subject(partition)
        if max_n <= 0:
            return []
        return self._call(self._read(partition, subject, int(after_seq), int(max_n), max(timeout_s, 0.001)),
                          timeout_s + self.request_timeout_s)

    async def _read(self, partition: str, subject: str, after_seq: int, max_n: int, timeout_s: float) -> list[Record]:
        sub = await self._reader(partition, subject, after_seq)
        try:
            msgs = await sub.fetch(max_n, timeout=timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except nats.errors.Error as exc:
            await self._drop_reader(partition)
            raise StreamError(f"read of {subject} failed: {exc} ({self._connection_state()})") from None
        records = [Record(m.metadata.sequence.stream, m.data, dict(m.headers or {})) for m in msgs]
        records = [r for r in records if r.seq > after_seq]
        if records:
            self._readers[partition] = (sub, records[-1].seq)
        return records

    async def _reader(self, partition: str, subject: str, after_seq: int) -> Any:
        """The partition's pull subscription positioned after ``after_seq`` (reused when it already is)."""
        cached = self._readers.get(partition)
        if cached is not None and cached[1] == after_seq:
            return cached[0]
        await self._drop_reader(partition)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1,
                                ack_policy=AckPolicy.NONE, filter_subject=subject, inactive_threshold=INACTIVE_S,
                                num_replicas=1, mem_storage=True)
        try:
            sub = await self._js.pull_subscribe(subject, durable=None, stream=self.stream, config=config)
        except nats.errors.Error as exc:
            raise StreamError(f"cannot read {subject} from stream {self.stream}: {exc}") from None
        self._readers[partition] = (sub, after_seq)
        return sub

    async def _drop_reader(self, partition: str) -> None:
        cached = self._readers.pop(partition, None)
        if cached is not None:
            try:
                await cached[0].unsubscribe()
            except nats.errors.Error as exc:  # the server removes it anyway after INACTIVE_S
                log.debug("unsubscribe of a read consumer failed: %s", exc)

    def last_seq(self, partition: str) -> int:
        """Stream sequence of the last record of ``partition`` (0 when it has none)."""
        return self._call(self._last_seq(self.subject(partition)), self.request_timeout_s)

    async def _last_seq(self, subject: str) -> int:
        try:
            msg = await self._js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError as exc:
            if getattr(exc, "err_code", None) == 10059:  # the stream itself is missing
                raise StreamError(f"JetStream stream {self.stream} does not exist (call ensure first)") from None
            return 0
        except nats.errors.Error as exc:
            raise StreamError(f"last record of {subject}: {exc} ({self._connection_state()})") from None
        return int(msg.seq)

    def info(self) -> dict[str, int]:
        """The stream's state: ``messages``, ``bytes``, ``first_seq``, ``last_seq``."""
        state = self._call(self._js.stream_info(self.stream), self.request_timeout_s).state
        return {"messages": state.messages, "bytes": state.bytes, "first_seq": state.first_seq,
                "last_seq": state.last_seq}

    def delete(self) -> None:
        """Delete the whole stream and its records (tests, benchmarks)."""
        with contextlib.suppress(nats.js.errors.NotFoundError):
            self._call(self._js.delete_stream(self.stream), self.request_timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the connection (unflushed records are dropped) and stop the loop thread."""
        if self._loop.is_closed():
            return
        with self._lock:
            dropped, self._unflushed = len(self._unflushed), []
        if dropped:
            log.warning("JetStream closed with %d records published and not flushed", dropped)
        try:
            self._call(self._close(), timeout_s)
        except StreamError as exc:
            log.warning("closing the NATS connection: %s", exc)
        finally:
            self._stop_loop()

    async def _close(self) -> None:
        self._closing = True
        for partition in list(self._readers):
            await self._drop_reader(partition)
        await self._nc.close()
        self.connected.clear()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(MARGIN_S)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> JetStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cancel(futures: list[asyncio.Future]) -> None:
    """Cancel the PubAck waits still open (nats-py then frees their slots)."""
    for f in futures:
        if not f.done():
            f.cancel()


__all__ = ["JetStream"]
