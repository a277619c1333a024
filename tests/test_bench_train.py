"""The end-to-end benchmark's accounting: frames/s and data-wait share over the timed steps only."""
import pytest

from benchmarks import bench_train


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rates_count_only_timed_steps_and_the_time_spent_waiting(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(bench_train.time, "perf_counter", clock)
    waits = [5.0, 0.5, 0.25, 0.25]  # the first batch (a warm-up step) waits for the workers to start

    def batches():
        for wait in waits:
            clock.now += wait
            yield "batch"

    timed = bench_train.TimedBatches(batches())
    for _ in timed:
        clock.now += 1.0  # the training step
    frames_per_second, wait_share = timed.rates(first=1, end=clock.now, batch_frames=16)
    timed_seconds = 3 * 1.0 + 0.5 + 0.25 + 0.25
    assert frames_per_second == pytest.approx(3 * 16 / timed_seconds)
    assert wait_share == pytest.approx(1.0 / timed_seconds)
