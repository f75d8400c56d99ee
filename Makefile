# The two commands of the README. Both set up a fresh machine first (apt + pip, as root).
.PHONY: setup demo test bench
# The python setup.sh installed into (a venv on Debian's externally managed python3), read
# when a recipe runs, after setup
PY = $(shell cat .sandbox/python 2>/dev/null || echo python3)
setup:
	bash scripts/setup.sh

demo: setup
	ivr demo

# -n 2 --dist loadgroup: the integration tests in order on one worker, the unit tests on the
# other beside them (tests/conftest.py, pytest_xdist_make_scheduler); the 30 slowest listed:
# the integration worker is the suite's critical path, near the 30-minute budget
test: setup
	ivr pbx up
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --durations=30 tests

bench: setup
	ivr pbx up
	$(PY) bench/bench_prompts.py
