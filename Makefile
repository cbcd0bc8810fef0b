# The two commands: `make demo` runs the main job, `make test` runs every test.
# Both start with scripts/setup.sh, which installs what is missing (idempotent).
.PHONY: demo test setup

demo:
	scripts/demo.sh

test:
	scripts/test.sh

setup:
	scripts/setup.sh
