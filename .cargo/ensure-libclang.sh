#!/bin/sh
# Cargo runs rustc through this script (see .cargo/config.toml) so that README's two commands,
# `cargo run --release` and `cargo test --release`, work as written on a fresh machine: RocksDB's
# bindings (bindgen) need libclang, and before the first compile this installs Debian's
# libclang-dev when no libclang is found. Then it runs rustc exactly as cargo asked.
# Cost on every later call: a few file tests. Set LIBCLANG_PATH to skip the check.
have_libclang() {
  [ -n "${LIBCLANG_PATH:-}" ] && return 0
  # libclang.so or libclang-<version>.so (not libclang-cpp, which bindgen cannot use)
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* /usr/lib/*/libclang.so* \
           /usr/lib/*/libclang-[0-9]*.so* /usr/local/lib/libclang.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}
if ! have_libclang; then
  log="${TMPDIR:-/tmp}/ckptlab-libclang-install.log"
  (
    flock 9 2>/dev/null || true
    have_libclang && exit 0
    echo "ckptlab: RocksDB's bindings need libclang; installing Debian's libclang-dev (log: $log)" >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else sudo="none"; fi
    if [ "$sudo" = none ] || ! command -v apt-get >/dev/null 2>&1; then
      echo "ckptlab: cannot install it here: install libclang (Debian/Ubuntu: apt-get install libclang-dev) and build again" >&2
      exit 0
    fi
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libclang-dev; } >"$log" 2>&1 \
      || echo "ckptlab: installing libclang-dev failed (see $log); the RocksDB build will say what is missing" >&2
  ) 9>"${TMPDIR:-/tmp}/ckptlab-libclang.lock"
fi
exec "$@"
