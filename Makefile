# The two commands of the README:
#   make serve   run the provider on its embedded development configuration
#   make test    lint, type-check and run the whole test suite
.PHONY: serve test lint bench

serve:
	@scripts/bootstrap
	.venv/bin/manifest-provider serve

test:
	@scripts/bootstrap --test
	.venv/bin/ruff check provider tests benchmarks rego deploy/sync-templates
	.venv/bin/ruff format --check provider tests benchmarks rego deploy/sync-templates
	.venv/bin/python rego/build.py --check
	.venv/bin/python deploy/sync-templates --check
	.venv/bin/mypy
	.venv/bin/pytest -n 2 -q

bench:
	@scripts/bootstrap --test
	.venv/bin/python -m benchmarks
