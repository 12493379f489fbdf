# Sourced by the bench scripts.

# need TOOL...: installs the missing ones with apt-get when run as root (each tool's Debian
# package has its name), else stops, naming them.
need() {
  local missing=() tool
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "$(basename "$0") needs: ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
}

# peer FILE DEST: a peer config of $HOPDIR, its placeholders filled in, written to $RUN/DEST.
peer() { sed -e "s#PIDDIR#$RUN#g" -e "s#HOPDIR#$HOPDIR#g" "$HOPDIR/$1" >"$RUN/$2"; }
