# The two commands of the README. Both set up a fresh machine first (apt + pip, as root).
.PHONY: setup demo test bench
# The python setup.sh installed into (a venv on Debian's externally managed python3), read
# when a recipe runs, after setup
PY = $(shell cat .sandbox/python 2>/dev/null || echo python3)
setup:
	bash scripts/setup.sh

demo: setup
	ivr demo

# -n 3 --dist loadgroup: the integration tests in order on one worker, the unit tests on all
# three (tests/conftest.py, pytest_xdist_make_scheduler; at -n 2 the machine was 43 % idle:
# the tests mostly wait); the 30 slowest listed. Then the 1,000-call
# test alone: beside unit tests it saturated the machine both ways (CI, 2026-12-05: 765 of
# 1,000 calls in flight together, and two manual-clock unit tests on PostgreSQL failed beside it)
test: setup
	ivr pbx up
	$(PY) -m pytest -q -p no:cacheprovider -n 3 --dist loadgroup --durations=30 \
		--ignore=tests/integration/test_load.py tests
	$(PY) -m pytest -q -p no:cacheprovider --durations=3 tests/integration/test_load.py

bench: setup
	ivr pbx up
	$(PY) bench/bench_prompts.py
