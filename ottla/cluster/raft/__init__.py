"""ottla.cluster.raft: KRaft for the metadata log — the pure core, its disk log, the wire
codec and the asyncio driver."""
