# The two commands of the README (`make demo`, `make test`). Both create or refresh the project-local .venv first
# (tools/bootstrap.sh), which installs nothing when the environment is already complete.
PY := .venv/bin/python

.PHONY: env demo lint docs test gpu-check
env:
	@bash tools/bootstrap.sh

demo: env
	@$(PY) tools/demo.py

# lint and format checks (ruff.toml), the docs build, then the whole test suite; CI runs exactly `make test` (.ci/run)
lint: env
	@$(PY) -m ruff check . && $(PY) -m ruff format --check .

# the documentation site (docs/conf.py): warnings are errors, so broken internal links and anchors fail it
docs: env
	@$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

test: lint docs
	@$(PY) -m pytest tests

# the GPU acceptance check (docs/cluster.md): sets up .venv with CUDA ops, runs everything that needs CUDA and prints
# one summary; `bash tools/gpu_check.sh --dry-run` only checks its command lines (tests/test_tools/test_gpu_check.py)
gpu-check:
	@bash tools/gpu_check.sh
