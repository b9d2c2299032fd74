"""How big each scenario is: the full suite of issue 6, and a quick smoke version."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    # (a) fan-out: subscribers on one channel, offered deliveries/s stepping up.
    fanout_subscribers: int
    fanout_steps: tuple[int, ...]
    """Offered deliveries per second (events/s x subscribers), in order."""
    step_seconds: float
    max_failed_steps: int
    """Consecutive failing steps after which the search stops."""
    # (b) efficiency at a moderate load.
    moderate_subscribers: int
    moderate_rate: float
    """Events per second; x subscribers = deliveries/s offered."""
    moderate_seconds: float
    # (c)+(d) idle streams, opened in stages (the first stage is the warm-up baseline).
    idle_stages: tuple[int, ...]
    idle_stages_seed: tuple[int, ...]
    """The seed app needs 2 fds and a Redis connection per stream: it gets fewer."""
    # (e) resume storm.
    resume_clients: int
    resume_behind: int
    resume_target_s: float
    # (g) reconnect storm: clients open a stream, a bounded number waiting at a time.
    storm_clients: int
    storm_in_flight: int
    storm_rounds: int
    # (f) multiplexing.
    multiplex_subscribers: int
    multiplex_rate: float
    multiplex_seconds: float
    # Fan-out to many subscribers on one channel, read by the C client (issue 14).
    wide_subscribers: int
    # Many browsers (issue 14): streams held over several workers, one event a second.
    browsers_streams: int
    browsers_workers: int
    browsers_max_streams_per_worker: int
    """SSE_MAX_STREAMS: under the per-process descriptor limit (20,000 on the bench VM)."""
    browsers_per_client: int
    """Streams per client process (each its own source address and descriptor limit)."""
    browsers_in_flight: int
    browsers_rate: float
    browsers_seconds: float
    # Optional runs.
    sweep_subscribers: tuple[int, ...]
    sweep_step_seconds: float
    """Shorter steps for the extra subscriber counts: their maximum, not their detail."""
    soak_seconds: float
    soak_round_seconds: float
    drain_seconds: float
    """How long a round may wait for late events before counting them lost."""
    sample_streams: int
    # Metrics cost (issue 12), counted under callgrind: a rate it keeps up with.
    instructions_rate: float
    """Events per second to moderate_subscribers while instructions are counted."""
    instructions_seconds: float
    instructions_scrapes: int
    """GET /metrics calls counted, with metrics on."""
    latency_target_ms: float = 50.0


FULL = Profile(
    name="full",
    fanout_subscribers=2000,
    # Fine steps first: on a small VM the knee of every system is at a few 10k/s.
    fanout_steps=(
        2_500,
        5_000,
        10_000,
        20_000,
        30_000,
        40_000,
        50_000,
        60_000,
        80_000,
        100_000,
        120_000,
        150_000,
        200_000,
        250_000,
        300_000,
        400_000,
        500_000,
        600_000,
        700_000,
        800_000,
        1_000_000,
    ),
    step_seconds=5.0,
    max_failed_steps=2,
    moderate_subscribers=2000,
    moderate_rate=40.0,
    moderate_seconds=10.0,
    idle_stages=(100, 1000, 5000, 10_000, 15_000),
    idle_stages_seed=(100, 1000, 4000, 8000),
    resume_clients=10_000,
    resume_behind=100,
    resume_target_s=5.0,
    storm_clients=10_000,
    storm_in_flight=200,
    storm_rounds=3,
    multiplex_subscribers=2000,
    multiplex_rate=40.0,
    multiplex_seconds=10.0,
    wide_subscribers=5000,
    browsers_streams=50_000,
    browsers_workers=3,
    browsers_max_streams_per_worker=19_000,
    browsers_per_client=17_000,
    browsers_in_flight=500,
    browsers_rate=1.0,
    browsers_seconds=120.0,
    sweep_subscribers=(500, 5000),
    sweep_step_seconds=3.0,
    soak_seconds=600.0,
    soak_round_seconds=10.0,
    drain_seconds=10.0,
    sample_streams=50,
    instructions_rate=1.0,
    instructions_seconds=20.0,
    instructions_scrapes=10,
)

QUICK = Profile(
    name="quick",
    fanout_subscribers=200,
    fanout_steps=(4_000, 10_000),
    step_seconds=1.0,
    max_failed_steps=1,
    moderate_subscribers=200,
    moderate_rate=40.0,
    moderate_seconds=1.5,
    idle_stages=(50, 300),
    idle_stages_seed=(50, 300),
    resume_clients=300,
    resume_behind=100,
    resume_target_s=5.0,
    storm_clients=500,
    storm_in_flight=50,
    storm_rounds=1,
    multiplex_subscribers=200,
    multiplex_rate=40.0,
    multiplex_seconds=1.0,
    # Two workers whose maxima add up to little more than the streams: an uneven spread of
    # accepts is refused (503) and retried, which the quick run then exercises.
    wide_subscribers=300,
    browsers_streams=600,
    browsers_workers=2,
    browsers_max_streams_per_worker=320,
    browsers_per_client=300,
    browsers_in_flight=100,
    browsers_rate=2.0,
    browsers_seconds=3.0,
    sweep_subscribers=(100, 400),
    sweep_step_seconds=1.0,
    soak_seconds=20.0,
    soak_round_seconds=5.0,
    drain_seconds=5.0,
    sample_streams=20,
    instructions_rate=2.0,
    instructions_seconds=3.0,
    instructions_scrapes=2,
)
