"""Run the questions a stopped ``benchmark.run`` case did not reach, when its records are gone: samples
``--skip`` onward of the same case, into another ``--out``.

    PYTHONPATH=. python benchmark/results/natural_test_smollm2_max_line32/multidoc_32k_rest.py --skip 226 \
        <benchmark.run arguments>

The `multidoc_qa` 32K test run of the recommended scorer stopped at 226 of 300 questions and its records were
lost with the machine (its counts are committed: ``multidoc_32k_partial_output.txt``). Each question's prompt
and greedy answer depend only on the question, the settings and the library (``locret/`` unchanged since that
run), so the remaining 74 run alone complete the 300. Everything else is ``benchmark.run`` as it is.
"""

from __future__ import annotations

import argparse

import benchmark.run as runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip", type=int, required=True, help="the samples already run")
    args, run_argv = parser.parse_known_args()
    load_samples = runner.load_samples
    runner.load_samples = lambda *a, **kw: load_samples(*a, **kw)[args.skip :]
    runner.main(run_argv)


if __name__ == "__main__":
    main()
