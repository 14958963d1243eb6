"""`bench/report_bench.py` loads the same consults in either order: sorted by creation
time (the default, as a live table stores them) or in the generator's random order."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.report_bench_loader import report_bench

UNTIL = datetime(2026, 11, 29, tzinfo=UTC)


def test_creation_order_is_the_same_rows_sorted_by_creation_time():
    bench = report_bench()
    generated = list(bench.generate(2000, UNTIL))
    created = [row[bench.CREATED] for row in generated]
    assert created != sorted(created)  # the generator's order is random in time
    ordered = list(bench.ordered(2000, UNTIL, "creation"))
    assert [row[bench.CREATED] for row in ordered] == sorted(created)
    assert sorted(ordered, key=repr) == sorted(generated, key=repr)


def test_random_order_is_the_generators_order():
    bench = report_bench()
    assert list(bench.ordered(500, UNTIL, "random")) == list(bench.generate(500, UNTIL))


def test_creation_order_is_the_default():
    bench = report_bench()
    assert bench.build_parser().parse_args([]).order == "creation"
    assert bench.build_parser().parse_args(["--order", "random"]).order == "random"
