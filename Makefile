# Convenience targets; the README's two commands are scripts/demo.sh and scripts/test.sh.
.PHONY: demo test bootstrap bench clean

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bootstrap:
	bash scripts/bootstrap.sh

bench: bootstrap
	for b in bench/*.py; do .venv/bin/python $$b || exit 1; done

clean:
	rm -rf build dist *.egg-info .pytest_cache libarms/_core*.so libarms/_core.c
