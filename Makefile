# The two commands of the README. Both set up a fresh machine first (apt + pip, as root).
.PHONY: setup demo test bench
setup:
	bash scripts/setup.sh

demo: setup
	ivr demo

test: setup
	ivr pbx up
	python3 -m pytest -q -p no:cacheprovider tests

bench: setup
	ivr pbx up
	python3 bench/bench_prompts.py
