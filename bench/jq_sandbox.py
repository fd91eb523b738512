"""Benchmark of sandboxed jq (issue 8): the jq step's throughput through the sandbox against the
raw ``jq`` binding with a reused compiled program, on the same document in the same run.
It also prints the fixed cost of one round trip (a program that does almost nothing).

Document: an e-commerce order of 50 line items (customer, per-line quantity, unit price,
discount, tax class, currency) and exchange rates. Program: a realistic order transform with
map/select/group_by/reduce: line totals with discounts and tax, lines grouped per tax class,
totals converted into the customer's currency, backordered lines picked out.

The sandboxed path is the jq step's own (``JqStep.run``: evaluate -> sandbox round trip with
its time budget); the baseline is ``jq.compile(program)`` once, then ``.input_value(order)
.first()``. The two alternate in blocks of 10 evaluations for ``--rounds`` x ``--seconds``;
the ratio is the median of the paired blocks' ratios (a shared machine's load moves too much
for best-of-rounds). Prints both median rates and the ratio, and exits 1 when the ratio (raw
rate / sandboxed rate) exceeds ``--max-ratio``.

Run from the repository root: ``python bench/jq_sandbox.py [--max-ratio 1.2]`` (no Django).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jq  # noqa: E402

from pipelines import sandbox  # noqa: E402
from pipelines.steps import StepContext, get_step_type  # noqa: E402

PROGRAM = r"""
def round2: (. * 100 | round) / 100;
.rates as $rates
| (.customer.currency) as $cur
| (.lines | map(
    . + {net: (.quantity * .unit_price * (1 - (.discount // 0))),
         tax_rate: ({standard: 0.2, reduced: 0.05, zero: 0}[.tax_class] // 0)}
    | . + {tax: (.net * .tax_rate), gross: (.net * (1 + .tax_rate))}
  )) as $lines
| {
    order: .id,
    customer: {id: .customer.id, name: (.customer.first_name + " " + .customer.last_name),
               tier: (if .customer.lifetime_value > 5000 then "gold" else "standard" end)},
    currency: $cur,
    by_tax_class: ($lines | group_by(.tax_class) | map({
        tax_class: .[0].tax_class, lines: length,
        net: (map(.net) | add | round2), tax: (map(.tax) | add | round2)})),
    totals: ($lines | reduce .[] as $l ({net: 0, tax: 0, gross: 0};
        .net += $l.net | .tax += $l.tax | .gross += $l.gross)
      | with_entries(.value |= (. * $rates[$cur] | round2))),
    backordered: [$lines[] | select(.stock < .quantity) | {sku, missing: (.quantity - .stock)}],
    heaviest: ($lines | max_by(.weight_kg * .quantity) | .sku),
    skus: ($lines | map(.sku) | unique | length)
  }
"""

CURRENCIES = ("EUR", "USD", "GBP", "JPY")


def make_order(seed: int = 7, lines: int = 50) -> dict:
    rnd = random.Random(seed)
    return {
        "id": "ord-2026-000123",
        "placed_at": "2026-12-01T10:00:00Z",
        "customer": {"id": "cus-42", "first_name": "Ada", "last_name": "Lovelace",
                     "email": "ada@example.test", "currency": "GBP", "lifetime_value": 7250.5,
                     "address": {"street": "1 Analytical Way", "city": "London", "zip": "N1 9GU",
                                 "country": "GB"}},
        "rates": {"EUR": 1.0, "USD": 1.08, "GBP": 0.86, "JPY": 162.3},
        "lines": [{"sku": f"SKU-{rnd.randrange(1000, 9999)}",
                   "title": f"Item {i} " + "x" * rnd.randrange(5, 40),
                   "quantity": rnd.randrange(1, 12),
                   "unit_price": round(rnd.uniform(1, 250), 2),
                   "discount": rnd.choice([0, 0, 0.05, 0.1, 0.25]),
                   "tax_class": rnd.choice(["standard", "standard", "reduced", "zero"]),
                   "currency": rnd.choice(CURRENCIES),
                   "stock": rnd.randrange(0, 20),
                   "weight_kg": round(rnd.uniform(0.1, 8), 2),
                   "tags": rnd.sample(["fragile", "gift", "bulky", "sale", "new"], 2)}
                  for i in range(lines)],
    }


def paired_blocks(raw, boxed, seconds: float, block: int = 10) -> tuple[list[float], list[float]]:
    """Seconds per evaluation of each side, in alternating blocks of ``block`` evaluations.

    On a shared machine the load changes from one second to the next; neighbouring blocks see
    about the same load, so the ratio of each pair is a fair comparison and their median is
    robust to the bursts that would decide a best-of-rounds figure.
    """
    raw_times, box_times = [], []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for fn, times in ((raw, raw_times), (boxed, box_times)):
            started = time.perf_counter()
            for _ in range(block):
                fn()
            times.append((time.perf_counter() - started) / block)
    return raw_times, box_times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-ratio", type=float, default=1.2,
                        help="fail when raw/sandboxed throughput exceeds this (default 1.2)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of alternating blocks")
    args = parser.parse_args(argv)

    order = make_order()
    raw_program = jq.compile(PROGRAM)
    step = get_step_type("jq")
    config = step.with_defaults({"program": PROGRAM, "input": order})
    ctx = StepContext(execution_id="bench", node_id="transform")

    expected = raw_program.input_value(order).first()
    got = step.run(config, ctx)
    if got != expected:
        print("sandboxed output differs from the raw binding's", file=sys.stderr)
        return 2

    raw_times, box_times = paired_blocks(lambda: raw_program.input_value(order).first(),
                                         lambda: step.run(config, ctx), args.seconds * args.rounds)
    ratio = statistics.median(b / r for r, b in zip(raw_times, box_times))
    raw, box = 1 / statistics.median(raw_times), 1 / statistics.median(box_times)
    # The fixed cost of a round trip: a program that does almost nothing on the same input.
    cheap_raw, cheap_config = jq.compile("length"), {**config, "program": "length"}
    cheap_times, cheap_box_times = paired_blocks(lambda: cheap_raw.input_value(order).first(),
                                                 lambda: step.run(cheap_config, ctx), args.seconds * 2)
    cheap, cheap_box = 1 / statistics.median(cheap_times), 1 / statistics.median(cheap_box_times)
    print(f"order transform: {len(order['lines'])} lines, program {len(PROGRAM)} chars")
    print(f"raw jq binding (compiled once): {raw:10.0f} evaluations/s  ({1e6 / raw:7.1f} us each)")
    print(f"sandboxed jq step:              {box:10.0f} evaluations/s  ({1e6 / box:7.1f} us each)")
    print(f"round trip overhead (program 'length' on the same order): "
          f"{1e6 / cheap_box - 1e6 / cheap:.0f} us ({1e6 / cheap:.0f} us raw, {1e6 / cheap_box:.0f} us sandboxed)")
    print(f"ratio raw/sandboxed (median of {len(raw_times)} paired blocks): {ratio:.2f}x "
          f"(max {args.max_ratio:g}x); sandbox processes started: {sandbox.evaluator.spawned}")
    sandbox.evaluator.close()
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
