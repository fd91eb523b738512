"""Micro-benchmark of step config validation, the check the engine makes on every step run
(``run_step`` -> ``StepType.check_config`` on the rendered config).

Three configs (``noop``, ``fail``, an ``http`` POST with headers, a secret and a JSON body) are
each checked in two ways: ``same`` repeats one config (a step whose config holds no template,
run after run: the remembered verdict answers), ``fresh`` changes a value every call (a
rendered template: ``jsonschema`` runs each time). Prints microseconds per check, the median of
``--rounds`` rounds of CPU time (``time.process_time``, so a loaded machine moves it less).

Run from the repository root: ``python bench/step_config.py [--rounds 7] [--number 2000]``.
Point ``PYTHONPATH`` at another checkout to measure its ``pipelines`` the same way.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
import timeit

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines.steps import get_step_type  # noqa: E402

CONFIGS = {
    "noop": {},
    "fail": {"fail_attempts": 1, "retryable": True, "message": "boom"},
    "http": {"url": "https://example.test/orders", "method": "POST",
             "headers": {"Accept": "application/json", "Authorization": {"$secret": "token"}},
             "json": {"order": 17, "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]},
             "timeout_s": 5},
}


def per_check_us(check, make_config, rounds: int, number: int) -> float:
    samples = []
    for _ in range(rounds):
        configs = [make_config() for _ in range(number)]
        it = iter(configs)
        seconds = timeit.timeit(lambda: check(next(it)), number=number, timer=time.process_time)
        samples.append(seconds / number * 1e6)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    counter = itertools.count()
    for type_name, config in CONFIGS.items():
        step = get_step_type(type_name)
        step.check_config(config)

        def fresh(config=config):
            # A new value each call, as a rendered template gives; "fail" and "noop" take a key
            # they accept (fail's message; noop has none, so it stays the same).
            out = dict(config)
            if "message" in out:
                out["message"] = f"boom {next(counter)}"
            if "json" in out:
                out["json"] = {**out["json"], "order": next(counter)}
            return out

        same = per_check_us(step.check_config, lambda config=config: config, args.rounds, args.number)
        changed = per_check_us(step.check_config, fresh, args.rounds, args.number)
        print(f"{type_name:5s} same {same:8.2f} us   fresh {changed:8.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
