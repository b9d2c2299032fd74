"""Side-by-side benchmark of the gateway, nchan and the seed-style FastAPI baseline.

``python -m bench [--quick] [--only ours,seed,nchan] [--out bench/results]`` starts
every process itself on free loopback ports: a redis-server per system, the
server under test pinned to core 0, the load generator (``bench.loadgen``) and
the publisher on core 1. Modules, one job each:

- ``loadgen``: the SSE load generator process (many streams, counts, latency).
- ``streams``: its sockets, read at once (sampled) or in bulk every few ms (counted).
- ``sse_wire``: HTTP response head, de-chunking, event counting and parsing.
- ``loadgen_control``: drives a load generator process from the orchestrator.
- ``publisher``: events at a fixed rate with a sequence number and a timestamp.
- ``procs``: free ports, pinned processes, redis-server.
- ``procstat``: CPU time, RSS, fds and threads of a process tree from /proc.
- ``systems``: how each system under test is started, addressed and published to.
- ``scenarios``: the measurements of issue 6 (fan-out, efficiency, memory, ...).
- ``report`` and ``plots``: results.json, results.md and the PNGs.
- ``profiler``: py-spy on the server during chosen scenarios (``--profile``).
"""
