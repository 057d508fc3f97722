# The two commands of the README (`make demo`, `make test`). Both create or refresh the project-local .venv first
# (tools/bootstrap.sh), which installs nothing when the environment is already complete.
PY := .venv/bin/python

.PHONY: env demo lint test gpu-check
env:
	@bash tools/bootstrap.sh

demo: env
	@$(PY) tools/demo.py

# lint and format checks (ruff.toml), then the whole test suite; CI runs exactly `make test` (.ci/run)
lint: env
	@$(PY) -m ruff check . && $(PY) -m ruff format --check .

test: lint
	@$(PY) -m pytest tests

# the GPU acceptance check (docs/cluster.md): sets up .venv with CUDA ops, runs everything that needs CUDA and prints
# one summary; `bash tools/gpu_check.sh --dry-run` only checks its command lines (tests/test_tools/test_gpu_check.py)
gpu-check:
	@bash tools/gpu_check.sh
