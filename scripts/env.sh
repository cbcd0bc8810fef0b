# Sourced by the project's scripts: the paths that scripts/setup.sh made.
EXPCLUSTER_CACHE="${EXPCLUSTER_CACHE:-$HOME/.cache/expcluster}"
export EXPCLUSTER_CACHE
export EXPCLUSTER_PYTHON="$EXPCLUSTER_CACHE/venv/bin/python"
export EXPCLUSTER_DATA="$EXPCLUSTER_CACHE/data"
# `python` in job commands is the venv's (numpy, scipy, scikit-learn, torch).
export PATH="$EXPCLUSTER_CACHE/venv/bin:$PATH"
