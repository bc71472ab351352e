# psytest developer tasks. Every target creates the virtual environment first if needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN    ?= runs/demo-sim

.PHONY: setup run test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

# The main job: administer an inventory under an option-order x template design and score it.
# Until the embedded local model lands, the respondent is a simulated one with known traits.
run: setup
	$(BIN)/psytest administer \
		--model sim/extraversion=1,agreeableness=-0.5,acquiescence=0.3,seed=1 \
		--inventory bfi-44 --option-orders original,reversed --templates numbered,lettered \
		--samples 2 --temperature 0.7 --out $(RUN)

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
