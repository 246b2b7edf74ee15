#!/usr/bin/env bash
# Nginx with hakmem, functional check (CI): build Nginx from the Debian source package twice
# (linked with libhakmem.a, and plain glibc; ci/nginx_lib.sh), check that malloc in the
# hakmem build is hakmem's (nm, ldd, a HAKMEM_DEBUG=json runtime probe), then for each build
# serve static files from 127.0.0.1 with 2 workers: fetch them many times with curl (one
# connection each, keep-alive, concurrent, aio threads, gzip, rewrite, ranges, HEAD, 404,
# autoindex) asserting status codes and checksums; reload (new workers) and check again;
# stop gracefully and assert that no process died on a signal, that every request is in the
# access log, and, for hakmem, that master and every worker printed a report counting
# mallocs. Run as root on Debian 12; about a minute. Usage: ci/nginx.sh
set -euo pipefail
source "$(dirname "$0")/nginx_lib.sh"
trap 'ngx_cleanup; [[ -n ${tmp:-} ]] && rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

workers=2
ngx_build
tmp=$(mktemp -d /tmp/hakmem-nginx.XXXXXX)
chmod 755 "$tmp"   # workers run as nobody when the master is root
ngx_write_conf "$tmp/probe" 1 1
ngx_verify_link "$tmp/probe/nginx.conf"

# ---- the files ----------------------------------------------------------------------------
# Random bytes in several sizes (empty to 3 MiB and a bit), the same files under aio/ (served
# by the thread pool), compressible text under gz/, a few names under dir/ (autoindex).
html=$tmp/html
mkdir -p "$html/aio" "$html/gz" "$html/dir"
sizes=(0 1 100 1000 4096 16385 65536 100003 1048576 3145735)
files=()
declare -A sha=()
for s in "${sizes[@]}"; do
  f=f$s
  head -c "$s" /dev/urandom >"$html/$f"
  ln "$html/$f" "$html/aio/$f"
  files+=("$f")
done
for n in 10 5000 200000; do seq "$n" >"$html/gz/t$n.txt"; done
touch "$html/dir/alpha.txt" "$html/dir/beta.bin" "$html/dir/gamma"
for f in "$html"/f* "$html"/gz/*; do sha[${f##*/}]=$(sha256sum <"$f" | cut -c1-64); done

reqs=0   # requests sent in this server's life; the access log must hold as many lines

# fetch LABEL WANT-CONNECTS URL-PATH...: one curl (keep-alive across the URLs) fetches every
# path; each must answer 200 with the bytes of the file of that base name; WANT-CONNECTS is
# the number of connections curl may open in all (0: no limit).
fetch() {
  local label=$1 want=$2 out args=() p i=0 code conns total=0 name got
  shift 2
  out=$(mktemp -d "$tmp/out.XXXXXX")
  for p in "$@"; do args+=("http://127.0.0.1:$port/$p" -o "$out/$i"); i=$((i + 1)); done
  curl -sS --max-time 60 -w '%{http_code} %{num_connects}\n' "${args[@]}" >"$out/w" ||
    ngx_die "$label: curl failed"
  reqs=$((reqs + $#))
  i=0
  for p in "$@"; do
    read -r code conns <&3 || ngx_die "$label: curl reported fewer transfers than URLs"
    name=${p##*/}
    [[ $code == 200 ]] || ngx_die "$label: GET /$p: status $code"
    got=$(sha256sum <"$out/$i" | cut -c1-64)
    [[ $got == "${sha[$name]}" ]] || ngx_die "$label: GET /$p: checksum mismatch ($(stat -c %s "$out/$i") bytes)"
    total=$((total + conns)); i=$((i + 1))
  done 3<"$out/w"
  ((want == 0 || total <= want)) || ngx_die "$label: $total connections for $# requests (want <= $want, keep-alive)"
  rm -rf "$out"
}

check_all() {
  local label=$1 p f r job
  # one connection per request
  for f in "${files[@]}"; do
    for p in "" aio/ rw/; do fetch "$label: single" 1 "$p$f"; done
  done
  # keep-alive: all files from every location, 3 times, one connection
  local ka=()
  for r in 1 2 3; do for p in "" aio/ rw/; do for f in "${files[@]}"; do ka+=("$p$f"); done; done; done
  fetch "$label: keep-alive" 1 "${ka[@]}"
  # concurrent: 8 clients at once, each keep-alive over all files in its own order
  local pids=() rc=0 n=${#files[@]}
  for job in 0 1 2 3 4 5 6 7; do
    local mine=()
    for ((r = 0; r < 2 * n; r++)); do
      f=${files[(r * (job + 1) + job) % n]}
      ((r % 2)) && mine+=("aio/$f") || mine+=("$f")
    done
    (fetch "$label: concurrent client $job" 1 "${mine[@]}") &
    pids+=($!)
  done
  for job in "${pids[@]}"; do wait "$job" || rc=1; done
  ((rc == 0)) || ngx_die "$label: a concurrent client failed"
  reqs=$((reqs + 8 * 2 * n))     # counted in the subshells, which cannot update ours
  # gzip: the text files decompress to the original bytes, and were compressed
  for f in "$html"/gz/*; do
    local hdr
    hdr=$(curl -sS --compressed -D - -o "$tmp/gz.out" "http://127.0.0.1:$port/gz/${f##*/}")
    reqs=$((reqs + 1))
    [[ $hdr == *"Content-Encoding: gzip"* ]] || ngx_die "$label: /gz/${f##*/} not gzip-encoded"
    [[ $(sha256sum <"$tmp/gz.out" | cut -c1-64) == "${sha[${f##*/}]}" ]] ||
      ngx_die "$label: /gz/${f##*/}: checksum mismatch after gunzip"
  done
  # a byte range (206), HEAD (200 and the length), a missing file (404), a directory listing
  local code
  code=$(curl -sS -r 1000-99999 -o "$tmp/range.out" -w '%{http_code}' "http://127.0.0.1:$port/f3145735")
  [[ $code == 206 ]] || ngx_die "$label: range request: status $code"
  cmp -s "$tmp/range.out" <(tail -c +1001 "$html/f3145735" | head -c 99000) ||
    ngx_die "$label: range request: wrong bytes"
  code=$(curl -sS -I -o "$tmp/head.out" -w '%{http_code}' "http://127.0.0.1:$port/f1048576")
  [[ $code == 200 ]] && grep -qi '^content-length: 1048576' "$tmp/head.out" ||
    ngx_die "$label: HEAD: status $code or wrong length"
  code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/missing")
  [[ $code == 404 ]] || ngx_die "$label: missing file: status $code"
  [[ $(curl -sS "http://127.0.0.1:$port/dir/") == *'"beta.bin"'* ]] || ngx_die "$label: autoindex listing"
  reqs=$((reqs + 4))
  ngx_log "$label: $reqs requests so far, all answered as expected"
}

run_build() {
  local build=$1 pfx=$tmp/$1 old new i
  mkdir -p "$pfx"
  ln -s "$html" "$pfx/html"
  NGX_HAKMEM_DEBUG=json ngx_start "$build" "$build" "$pfx" "$workers"
  reqs=1   # ngx_start's readiness request
  port=$NGX_PORT
  local master=${NGX_PID[$build]}
  check_all "$build"

  old=$(ngx_children "$master" | sort)
  "${NGX_BIN[$build]}" -p "$pfx" -c "$pfx/nginx.conf" -s reload 2>/dev/null || ngx_die "$build: nginx -s reload failed"
  for ((i = 0; i < 100; i++)); do
    new=$(ngx_children "$master" | sort)
    [[ $(wc -w <<<"$new") == "$workers" ]] && [[ -z $(comm -12 <(echo "$old") <(echo "$new")) ]] && break
    sleep 0.1
  done
  ((i < 100)) || ngx_die "$build: the workers were not replaced after reload (old: $old; now: $new)"
  ngx_log "$build: reloaded, workers $(echo $old) -> $(echo $new)"
  check_all "$build (after reload)"

  ngx_stop "$build" || ngx_die "$build: the master exited with status $? (or a worker was left)"
  local log=$pfx/logs/error.log
  if grep -E 'exited on signal|\[(alert|crit|emerg)\]' "$log"; then ngx_die "$build: see the error log lines above"; fi
  local exits
  exits=$(grep -c 'exited with code 0' "$log" || true)
  ((exits >= 2 * workers)) || ngx_die "$build: $exits workers exited with code 0, want >= $((2 * workers))"
  local logged
  logged=$(wc -l <"$pfx/logs/access.log")
  ((logged == reqs)) || ngx_die "$build: access log has $logged lines for $reqs requests"
  local rep
  if [[ $build == hakmem ]]; then
    rep=$(ngx_report_mallocs <"$pfx/stderr") || ngx_die "$build: no HAKMEM_DEBUG report on the master's stderr"
    local started parsed mallocs last
    read -r started parsed mallocs last <<<"$rep"
    ((started == 1 + 2 * workers)) ||
      ngx_die "$build: $started hakmem reports, want $((1 + 2 * workers)) (master, 2 x $workers workers)"
    ((last == 1 && mallocs > 0)) || ngx_die "$build: the master's report (the last) is not whole or counts no mallocs"
    ngx_log "$build: $started hakmem reports (master and every worker), $parsed of them whole" \
      "(see ngx_report_mallocs), $mallocs mallocs counted in those"
  else
    ! grep -q '"hakmem"' "$pfx/stderr" || ngx_die "$build: a hakmem report from the glibc build"
  fi
  ngx_log "$build: ok ($reqs requests, $exits worker exits with code 0, no signal deaths)"
}

run_build hakmem
run_build glibc
echo "ci/nginx.sh: ok"
