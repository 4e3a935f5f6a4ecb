#!/usr/bin/env bash
# Set up a ComfyUI test host for the host and browser tiers: ComfyUI's source, a Python virtual
# environment with ComfyUI's requirements, this pack's test requirements, and a newer editor frontend.
#
#   bash tests/host/setup_host.sh [SOURCE] [--frontend VERSION] DEST
#
# SOURCE, where ComfyUI comes from (default: the 0.33.0 archive in ../shared/comfyui/ beside the
# repository when it is there, otherwise git tag v0.33.0 of the official repository):
#   --git URL --tag TAG   clone one tag (needs the network)
#   --archive FILE        a source archive (.tar.gz) whose top folder is the ComfyUI tree. An archive
#                         named comfyui-VERSION.tar.gz with an install.sh beside it is installed by
#                         that script, which knows how to get CPU-only torchvision/torchaudio working
#                         where the registry has only CUDA builds of them
#   --checkout DIR        a ComfyUI checkout, used where it is
# --torch SPEC            what pip installs as torch for a git or checkout source (default: torch)
# --frontend VERSION      comfyui-frontend-package to unpack for `--front-end-root` (default 1.58.1;
#                         "none" skips it)
#
# Makes DEST/ComfyUI-<version> (unless --checkout), DEST/venv-<version> and DEST/frontend-<version>,
# writes DEST/host.env and prints it: COMFYUI_PATH, COMFY_PYTHON and LONGVIDEO_FRONTEND_ROOT.
# Safe to run again: what is there is reused.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
default_archive="$repo_root/../shared/comfyui/comfyui-0.33.0.tar.gz"
git_url="" git_tag="" archive="" checkout="" torch_spec="torch" frontend_version="1.58.1" dest=""

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --git) git_url=${2:?}; shift 2 ;;
    --tag) git_tag=${2:?}; shift 2 ;;
    --archive) archive=${2:?}; shift 2 ;;
    --checkout) checkout=${2:?}; shift 2 ;;
    --torch) torch_spec=${2:?}; shift 2 ;;
    --frontend) frontend_version=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) [ -z "$dest" ] || usage; dest=$1; shift ;;
  esac
done
[ -n "$dest" ] || usage
if [ -z "$git_url$archive$checkout" ]; then
  if [ -f "$default_archive" ]; then
    archive=$default_archive
  else
    git_url=https://github.com/Comfy-Org/ComfyUI
    git_tag=v0.33.0
  fi
fi
[ -z "$git_url" ] || [ -n "$git_tag" ] || { echo "--git needs --tag" >&2; exit 2; }

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1
say() { echo "setup_host: $*" >&2; }

# A venv with torch and ComfyUI's own requirements, for sources that no install.sh knows.
install_comfyui_requirements() {
  local src=$1 venv=$2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  say "installing $torch_spec and ComfyUI's requirements into $venv"
  "$venv/bin/python" -m pip install -q "$torch_spec" torchvision torchaudio
  "$venv/bin/python" -m pip install -q -r "$src/requirements.txt" requests -c <(pinned_torch "$venv/bin/python")
}

# The torch packages as installed, so that later installs cannot replace them (e.g. with a CUDA build).
pinned_torch() {
  "$1" - <<'EOF'
from importlib.metadata import PackageNotFoundError, version
for name in ("torch", "torchvision", "torchaudio"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        pass
EOF
}

if [ -n "$archive" ]; then
  archive=$(cd "$(dirname "$archive")" && pwd)/$(basename "$archive")
  name=$(basename "$archive"); name=${name%.tar.gz}; name=${name%.tgz}
  version=${name#comfyui-}
  installer=$(dirname "$archive")/install.sh
  if [ "$name" != "$version" ] && [ -f "$installer" ]; then
    say "installing ComfyUI $version with $installer"
    bash "$installer" "$version" "$dest" >&2
    src=$dest/ComfyUI-$version
    venv=$dest/venv-$version
  else
    src=$dest/ComfyUI-$name
    venv=$dest/venv-$name
    if [ ! -d "$src" ]; then
      mkdir -p "$src"
      tar -xzf "$archive" -C "$src" --strip-components=1
    fi
    install_comfyui_requirements "$src" "$venv"
  fi
elif [ -n "$git_url" ]; then
  src=$dest/ComfyUI-$git_tag
  venv=$dest/venv-$git_tag
  [ -d "$src/.git" ] || git clone -q --depth 1 --branch "$git_tag" "$git_url" "$src"
  install_comfyui_requirements "$src" "$venv"
else
  src=$(cd "$checkout" && pwd)
  venv=$dest/venv-$(basename "$src")
  install_comfyui_requirements "$src" "$venv"
fi
py=$venv/bin/python
[ -f "$src/main.py" ] && [ -f "$src/nodes.py" ] || { echo "$src does not look like a ComfyUI tree" >&2; exit 1; }

say "installing the pack's requirements and test requirements"
"$py" -m pip install -q -r "$repo_root/requirements.txt" -r "$repo_root/requirements-test.txt" -c <(pinned_torch "$py")

frontend_root=""
if [ "$frontend_version" != "none" ]; then
  frontend_dir=$dest/frontend-$frontend_version
  frontend_root=$frontend_dir/comfyui_frontend_package/static
  if [ ! -f "$frontend_root/index.html" ]; then
    say "unpacking comfyui-frontend-package $frontend_version"
    "$py" -m pip download -q --no-deps --dest "$frontend_dir" "comfyui-frontend-package==$frontend_version"
    "$py" -m zipfile -e "$frontend_dir"/comfyui_frontend_package-"$frontend_version"-*.whl "$frontend_dir"
  fi
fi

# ComfyUI must start with this Python (it imports torchvision, and torchaudio from 0.33 on)
say "starting ComfyUI once"
check_dir=$(mktemp -d)
mkdir "$check_dir/custom_nodes"
if ! (cd "$src" && timeout 300 "$py" main.py --cpu --quick-test-for-ci --disable-api-nodes --base-directory "$check_dir" \
        --database-url "sqlite:///$check_dir/comfyui.db" > "$check_dir/log" 2>&1); then
  tail -n 30 "$check_dir/log" >&2
  echo "ComfyUI in $src does not start with $py" >&2
  exit 1
fi
rm -rf "$check_dir"
{
  echo "COMFYUI_PATH=$src"
  echo "COMFY_PYTHON=$py"
  [ -z "$frontend_root" ] || echo "LONGVIDEO_FRONTEND_ROOT=$frontend_root"
} > "$dest/host.env"
cat "$dest/host.env"
