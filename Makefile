# The two commands of the README. Both create/refresh the project-local .venv first (tools/bootstrap.sh),
# which installs nothing when the environment is already complete.
PY := .venv/bin/python

.PHONY: env demo test
env:
	@bash tools/bootstrap.sh

demo: env
	@$(PY) tools/demo.py

test: env
	@$(PY) -m pytest tests
