"""JT/T 808 (JT/T 808-2013 and JT/T 808-2019): the road-transport terminal protocol Chinese vehicle terminals
speak over TCP, and its gateway to the twin's ``beidou`` family.

Codec modules (pure functions; bad input raises only ``ingest.rejection.Refusal``):

* ``framing``: 0x7e flags, 0x7d escaping, the XOR check code, and ``FrameSplitter`` which cuts a TCP byte
  stream into frames with bounded memory.
* ``header``: ``Header``/``Message``, ``parse_frame`` (unescape, check code, 2013/2019 header, sub-package
  fields, vendor layout quirks) and ``build_frame``.
* ``messages``: message ids, general replies 0x0001/0x8001, registration 0x0100/0x8100, authentication 0x0102,
  text delivery 0x8300 (GBK).
* ``location``: location report 0x0200 (basic information, additional items, unknown items kept raw) and batch
  upload 0x0704.
* ``reassembly``: ``Reassembler`` joins sub-packaged messages; ``frame_payload`` re-frames a whole message for
  the twin.

``ingest.decoders.jt808`` turns location frames into ``position`` records; the gateway modules of this package
answer terminals and publish their location frames. Nothing is imported here: import the module you need.
"""
