#!/usr/bin/env bash
# Installs everything kiln needs on a fresh Debian/Ubuntu machine with Node 20, as root, and builds it.
# Idempotent: a second run installs nothing new and only rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: the sandbox (bubblewrap, libseccomp for the filter compiler), the C toolchain for
# our init, PostgreSQL for the tests, and Chromium for the browser tests (playwright-core drives it; no
# browser is downloaded); then the language runtimes of the catalog
# (packages/runner/src/languages/catalog/), every one of them unless KILN_LANGUAGES names a few
# (KILN_LANGUAGES=python,node,c for a quick try). A runner offers what it finds installed.
APT_PACKAGES=(
  bubblewrap libseccomp-dev gcc g++ make util-linux iproute2 bash dash
  postgresql
  chromium
)
declare -A LANGUAGE_PACKAGES=(
  [python]="python3 python3-numpy python3-pandas python3-scipy python3-matplotlib python3-sklearn python3-sympy python3-requests python3-pil python3-yaml"
  [pypy]="pypy3"
  [node]="node-typescript node-lodash node-underscore node-moment node-uuid node-semver node-axios node-commander node-yargs"
  [typescript]="node-typescript"
  [coffeescript]="coffeescript"
  [bash]="bash" [sh]="dash" [zsh]="zsh" [perl]="perl" [raku]="rakudo" [tcl]="tcl" [ruby]="ruby" [php]="php-cli"
  [lua]="lua5.4 lua5.3 lua5.1" [luajit]="luajit" [r]="r-base-core" [octave]="octave" [awk]="gawk" [bc]="bc"
  [sqlite]="sqlite3" [basic]="yabasic" [forth]="gforth"
  [c]="gcc gcc-11 clang-14 clang-15 clang-16" [cpp]="g++ g++-11 clang-14 clang-15 clang-16"
  [go]="golang-go" [rust]="rustc" [fortran]="gfortran" [pascal]="fp-compiler" [d]="gdc ldc" [nim]="nim"
  [crystal]="crystal" [ada]="gnat" [cobol]="gnucobol3" [nasm]="nasm binutils"
  [java]="default-jdk-headless" [kotlin]="kotlin default-jdk-headless" [scala]="scala" [groovy]="groovy"
  [clojure]="clojure" [csharp]="mono-mcs mono-runtime" [haskell]="ghc" [ocaml]="ocaml-nox"
  [erlang]="erlang-nox" [elixir]="elixir" [racket]="racket" [scheme]="guile-3.0" [commonlisp]="sbcl"
  [prolog]="swi-prolog-nox"
)
if [ -n "${KILN_LANGUAGES:-}" ]; then
  IFS=',' read -r -a languages <<< "$KILN_LANGUAGES"
else
  languages=("${!LANGUAGE_PACKAGES[@]}")
fi
for language in "${languages[@]}"; do
  language="${language// /}"
  [ -z "$language" ] && continue
  if [ -z "${LANGUAGE_PACKAGES[$language]+set}" ]; then
    echo "setup: KILN_LANGUAGES names $language, which is not in the catalog; known: ${!LANGUAGE_PACKAGES[*]}" >&2
    exit 1
  fi
  read -r -a packages <<< "${LANGUAGE_PACKAGES[$language]}"
  APT_PACKAGES+=("${packages[@]}")
done
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: these packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # A distribution without one of them (another release, another vendor) gets the rest: the runner
  # offers only what it finds, and says so.
  installable=()
  for p in "${missing[@]}"; do
    if apt-cache show "$p" >/dev/null 2>&1; then installable+=("$p"); else echo "setup: no package $p here: skipped" >&2; fi
  done
  missing=("${installable[@]}")
  echo "setup: installing ${missing[*]}"
  # Debian starts a cluster when it installs postgresql; the tests make their own databases anyway.
  if [ ${#missing[@]} -gt 0 ]; then apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; fi
fi

npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
if [ -f packages/runner/native/Makefile ]; then
  make -s -C packages/runner/native
fi
echo "setup: done"
