# Sourced by the check scripts: ensure_venv DIR REQUIREMENTS CONSTRAINTS
# makes a tool venv beside the project venv (.venv, made by scripts/deps.sh)
# and installs the pins into it. The venv is made --without-pip and filled
# by the project venv's pip (`pip --python`, pip >= 22.3): no second
# ensurepip run, whose failure prints nothing but its exit status (a fresh
# CI clone once stopped there), and pip's own error names what went wrong.
# The stamp holds a hash of the pins, not a time (see scripts/deps.sh).
ensure_venv() {
  local venv=$1 reqs=$2 cons=$3 pins
  pins=$(cat "$reqs" "$cons" | sha256sum | cut -d' ' -f1)
  [[ -f $venv/.installed && $(cat "$venv/.installed") == "$pins" ]] && return 0
  [[ -x .venv/bin/pip ]] || scripts/deps.sh
  [[ -x $venv/bin/python ]] || python3 -m venv --without-pip "$venv"
  .venv/bin/pip --python "$venv/bin/python" install -q --disable-pip-version-check \
    -r "$reqs" -c "$cons"
  echo "$pins" >"$venv/.installed"
}
