"""Benchmark: µs per number for `normalize_e164` against plain `phonenumbers` calls.

    .venv/bin/python -m bench.phones        # --count 100000

Both paths give the same answers (tests/unit/test_phones.py); this shows what each costs,
for numbers written as E.164 and as people write them nationally, `(415) 200-0001`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

import phonenumbers

from bench.common import describe
from bench.data import phone_number
from outdial.phones import normalize_e164


def library(text: str) -> str:
    parsed = phonenumbers.parse(text, "US")
    assert phonenumbers.is_valid_number(parsed)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def ours(text: str) -> str:
    return normalize_e164(text, "US")


def cpu_microseconds(function: Callable[[str], str], numbers: list[str]) -> float:
    """Best of three runs, CPU time per number."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for number in numbers:
            function(number)
        best = min(best, time.process_time() - started)
    return best / len(numbers) * 1e6


def main(args: argparse.Namespace) -> None:
    print("\n".join(asyncio.run(describe(None))))
    print(f"numbers:    {args.count:,} distinct US and Canadian numbers, default region US\n")
    print("| written as | phonenumbers parse + is_valid_number | normalize_e164 | speed-up |")
    print("|---|---:|---:|---:|")
    for style in ("e164", "national"):
        numbers = [phone_number(index, style) for index in range(args.count)]
        assert [ours(n) for n in numbers[:1000]] == [library(n) for n in numbers[:1000]]
        slow, fast = cpu_microseconds(library, numbers), cpu_microseconds(ours, numbers)
        print(f"| {style} | {slow:.1f} µs | {fast:.1f} µs | {slow / fast:.1f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=100_000)
    main(parser.parse_args())
