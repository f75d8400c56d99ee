# The two commands of the README. Both set up a fresh machine first (apt + pip, as root).
.PHONY: setup demo test bench
setup:
	bash scripts/setup.sh

demo: setup
	ivr demo

# -n 2 --dist loadgroup: the integration tests in order on one worker, the unit tests on the
# other beside them (tests/conftest.py, pytest_xdist_make_scheduler)
test: setup
	ivr pbx up
	python3 -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup tests

bench: setup
	ivr pbx up
	python3 bench/bench_prompts.py
