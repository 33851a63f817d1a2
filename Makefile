# Convenience targets; each is a plain command you can also run by hand.
PYTHON ?= python3

.PHONY: test test-floors lint conformance conformance-quick wstest

test:
	$(PYTHON) -m pytest

# The unit suite on the lowest versions pyproject.toml declares.
test-floors:
	bash scripts/test-floors.sh

lint:
	ruff check src tests twisted scripts bench
	mypy
	lint-imports --no-cache

wstest:
	bash scripts/install-wstest.sh

# Cases 1-10 (~30 s), as CI runs them.
conformance-quick: wstest
	$(PYTHON) scripts/conformance.py --cases 1-10

# Every case, including 12-13 with compression on (~11 minutes).
conformance: wstest
	$(PYTHON) scripts/conformance.py --cases all
