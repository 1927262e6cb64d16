"""bench/soak.py's pure parts: the slope a memory verdict rests on, the warm-up it leaves out,
the error lines it counts, CPU per rows, per-minute latency and the files it writes."""

from __future__ import annotations

import csv
import io
import math
import xml.etree.ElementTree as ET

import pytest

from bench.soak import (
    Minute,
    Sample,
    cpu_per_100k,
    error_kinds,
    error_lines,
    memory,
    minute_figures,
    rss_svg,
    samples_csv,
    slope_per_hour,
    warning_lines,
)


def _samples(rss: list[float], every: float = 10.0, rows_per: float = 50_000) -> list[Sample]:
    return [Sample(at=n * every, rss={"sink": mib, "kafka": 600.0},
                   cpu={"sink": n * 0.5, "kafka": n * 0.1}, lag_process=n, lag_sink=None,
                   rows=n * rows_per, load=1.5)
            for n, mib in enumerate(rss)]  # fmt: skip


def test_the_slope_of_a_steady_growth_is_its_rate_per_hour() -> None:
    # 1 MiB a minute: 60 MiB an hour, whatever the offset.
    points = [(t * 60.0, 200 + t) for t in range(30)]
    assert slope_per_hour(points) == pytest.approx(60.0)


def test_a_flat_series_with_noise_has_a_slope_near_zero() -> None:
    points = [(t * 10.0, 300 + (3 if t % 2 else -3)) for t in range(360)]
    assert abs(slope_per_hour(points)) < 0.1


def test_a_shrinking_series_has_a_negative_slope() -> None:
    assert slope_per_hour([(0, 100), (1800, 90), (3600, 80)]) == pytest.approx(-20.0)


@pytest.mark.parametrize("points", [[], [(5.0, 100.0)], [(5.0, 100.0), (5.0, 140.0)]])
def test_no_slope_from_fewer_than_two_times(points: list[tuple[float, float]]) -> None:
    assert slope_per_hour(points) == 0.0


def test_the_warm_up_is_left_out_of_the_slope_but_not_of_start_and_peak() -> None:
    # Growing fast for the first minute (imports, buffers filling), then flat.
    samples = _samples([100, 150, 200, 250, 300, 300, 300, 300, 300, 300, 300, 300])
    figures = memory(samples, "sink", warmup_s=50)
    assert (figures.start, figures.end, figures.peak) == (100, 300, 300)
    assert figures.slope == 0.0
    assert memory(samples, "sink", warmup_s=0).slope > 1000


def test_a_short_run_fits_all_its_samples_rather_than_fewer_than_three() -> None:
    samples = _samples([100, 110, 120, 130])
    assert memory(samples, "sink", warmup_s=35).slope == pytest.approx(3600.0)


def test_memory_of_a_process_never_sampled_is_an_error() -> None:
    with pytest.raises(ValueError, match="no sample of webhook"):
        memory(_samples([1, 2]), "webhook", warmup_s=0)


def test_error_lines_from_every_kind_of_log() -> None:
    log = "\n".join([
        "17:00:01 INFO    sinks.service: sink consuming md.ticks",
        "17:00:02 WARNING sinks.service: database away; retrying",
        "17:00:03 ERROR   sinks.service: batch failed",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "ValueError: bad",
        "[2026-12-02 17:00:04,000] ERROR [Controller id=1] something (kafka.controller)",
        "[2026-12-02 17:00:04,000] WARN [Broker id=1] slow (kafka.server)",
        "2026-12-02 17:00:05 UTC [123] FATAL:  terminating connection",
        "[2026-12-02 17:00:06,1] [9] [INFO] Timer commit woke up too late",
        "an error in prose is not a level",
    ])  # fmt: skip
    assert [line[:20] for line in error_lines(log)] == [
        "17:00:03 ERROR   sin", "Traceback (most rece", "ValueError: bad",
        "[2026-12-02 17:00:04", "2026-12-02 17:00:05 ",
    ]  # fmt: skip
    assert len(warning_lines(log)) == 2


def test_cpu_per_100k_rows_counts_from_the_warm_up_on() -> None:
    samples = _samples([100.0] * 11, rows_per=50_000)
    # After the warm-up (t >= 30): samples 3..10, 3.5 CPU-s over 350k rows.
    assert cpu_per_100k(samples, "sink", warmup_s=30) == pytest.approx(1.0)
    assert cpu_per_100k(samples, "kafka", warmup_s=30) == pytest.approx(0.2)


def test_no_cpu_per_rows_when_nothing_was_stored() -> None:
    assert cpu_per_100k(_samples([1.0] * 5, rows_per=0), "sink", warmup_s=0) is None
    assert cpu_per_100k(_samples([1.0] * 5), "webhook", warmup_s=0) is None


def _minute(delays_s: list[float]) -> Minute:
    minute = Minute()
    for delay in delays_s:
        minute.add(delay)
    return minute


def test_a_minute_keeps_counts_by_the_millisecond_not_each_delay() -> None:
    minute = _minute([0.1001, 0.0999, 0.1004, 0.25])
    assert minute.counts == {100: 3, 250: 1}
    assert minute.rows() == 4


def test_percentiles_of_a_minute_are_the_nearest_rank() -> None:
    minute = _minute([n / 1000 for n in range(1, 101)])  # 1..100 ms
    assert (minute.percentile(50), minute.percentile(99), minute.percentile(100)) == (50, 99, 100)
    assert _minute([0.3]).percentile(1) == 300


def test_a_minute_without_rows_has_no_percentile() -> None:
    with pytest.raises(ValueError, match="no rows"):
        Minute().percentile(50)


def test_minute_figures_in_order_and_in_milliseconds() -> None:
    minutes = {2: _minute([0.2] * 100), 0: _minute([0.1] * 99 + [1.0]), 1: Minute()}
    assert minute_figures(minutes) == [(0, 100, 100.0, 100.0), (2, 100, 200.0, 200.0)]
    assert minute_figures({0: _minute([0.1] * 98 + [1.0] * 2)})[0][3] == 1000.0


def test_error_kinds_group_one_complaint_repeated_with_other_numbers() -> None:
    errors = [
        "2026-12-02 17:18:11.307 UTC [17774] ERROR:  duplicate key value violates unique "
        'constraint "market_data_ohlcv_pkey"',
        "2026-12-02 17:19:22.204 UTC [17801] ERROR:  duplicate key value violates unique "
        'constraint "market_data_ohlcv_pkey"',
        "[2026-12-02 17:18:55,620] [17725] [ERROR] [^---AIOKafkaConsumerThread]: Thread keepalive",
    ]
    kinds = error_kinds(errors)
    assert kinds.most_common() == [
        ('ERROR:  duplicate key value violates unique constraint "market_data_ohlcv_pkey"', 2),
        ("ERROR] [^---AIOKafkaConsumerThread]: Thread keepalive", 1),
    ]


def test_the_csv_has_a_column_per_process_and_figure() -> None:
    rows = list(csv.DictReader(io.StringIO(samples_csv(_samples([100.0, 101.0, 102.25]),
                                                       ["sink", "kafka", "webhook"]))))  # fmt: skip
    assert len(rows) == 3
    assert rows[2]["rss_mib_sink"] == "102.25"
    assert rows[2]["cpu_s_sink"] == "1.00"
    assert rows[2]["rss_mib_webhook"] == ""  # never sampled: empty, not 0
    assert (rows[2]["lag_process"], rows[2]["lag_sink"], rows[2]["rows"]) == ("2", "", "100000")


def test_the_svg_is_well_formed_with_a_line_per_process_spanning_the_run() -> None:
    samples = _samples([100 + math.sin(n) for n in range(40)])
    odd = "<odd & name>"
    samples = [Sample(s.at, {**s.rss, odd: 50.0}, s.cpu, None, None, s.rows, s.load)
               for s in samples]  # fmt: skip
    svg = rss_svg(samples, ["sink", "kafka", odd, "never sampled"], warmup_s=60)
    tree = ET.fromstring(svg)  # noqa: S314 - the soak's own output
    lines = tree.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 3  # the process never sampled has no panel
    for line in lines:
        xs = [float(p.split(",")[0]) for p in line.attrib["points"].split()]
        assert len(xs) == 40
        assert xs == sorted(xs)
    titles = [t.text or "" for t in tree.iter("{http://www.w3.org/2000/svg}text")]
    assert any(t.startswith("sink: 100 → 101 MiB, slope") for t in titles)
    assert any(t.startswith(f"{odd}: 50 → 50 MiB, slope +0.0") for t in titles)
