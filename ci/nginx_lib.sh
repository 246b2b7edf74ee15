# nginx_lib.sh -- shared by ci/nginx.sh and bench/nginx_bench.sh (sourced, not run).
#
# Gets Nginx as a Debian source package, builds hakmem (release) and Nginx twice from that
# source: NGX_BIN[hakmem] links libhakmem.a, NGX_BIN[glibc] is plain. Starts and stops
# servers on 127.0.0.1 with a generated config; every server started here is stopped by
# ngx_cleanup (the callers trap it on EXIT).
#
# Why static: the binary carries hakmem itself (no rpath into a build folder, nothing to find
# at run time), malloc is defined in the executable, which comes first in symbol lookup
# order, so libc's and the shared libraries' own calls to malloc bind to it too, and nginx's
# calls are direct calls, not through the PLT. --whole-archive takes every object, so the
# whole malloc family (free, realloc, posix_memalign, malloc_usable_size, ...) and hakmem's
# constructors come together; a partial family would hand hakmem blocks to glibc's free.
#
# Provides: NGX_ROOT, NGX_WORK, NGX_BIN (assoc: hakmem, glibc), ngx_log, ngx_die,
# ngx_install_pkgs PKG..., ngx_build, ngx_verify_link, ngx_free_port, ngx_write_conf,
# ngx_start NAME BUILD PREFIX WORKERS [EXTRA-CONF], ngx_children PID, ngx_rss_kib PID [FIELD],
# ngx_stop NAME, ngx_cleanup.

NGX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NGX_WORK=${HAKMEM_NGINX_WORK:-$NGX_ROOT/build-nginx}   # ignored by .gitignore (build*/)
declare -A NGX_BIN=([hakmem]=$NGX_WORK/obj-hakmem/nginx [glibc]=$NGX_WORK/obj-glibc/nginx)
declare -A NGX_PID=()    # server name -> master pid (started here)
declare -A NGX_PFX=()    # server name -> prefix
NGX_HAKMEM_LIB=$NGX_WORK/hakmem/libhakmem.a

ngx_log() { printf '%s\n' "$*" >&2; }
ngx_die() { ngx_log "FAIL: $*"; exit 1; }

# Install what is missing (apt-get update only then).
ngx_install_pkgs() { bash "$NGX_ROOT/ci/deps.sh" "$@"; }

# The unpacked source tree (apt-get source, once). The newest source version is tried first;
# a mirror may list a version whose files it does not hold (seen: bookworm-security 404s),
# so each listed version is tried in turn.
ngx_source() {
  local dir=$NGX_WORK/src v
  for v in "$dir"/nginx-*/configure; do [[ -f $v ]] && { dirname "$v"; return 0; }; done
  bash "$NGX_ROOT/ci/debsrc.sh"
  mkdir -p "$dir"
  local versions
  versions=$(apt-cache madison nginx | awk -F'|' '$3 ~ /Sources/ { gsub(/ /, "", $2); print $2 }' | awk '!seen[$0]++')
  [[ -n $versions ]] || ngx_die "no nginx source package listed (apt-cache madison nginx)"
  for v in $versions; do
    ngx_log "apt-get source nginx=$v"
    (cd "$dir" && apt-get source -qq "nginx=$v" 2>&1) | grep -v -e unsandboxed -e '^dpkg-source: info' >&2 || true
    for f in "$dir"/nginx-*/configure; do [[ -f $f ]] && { dirname "$f"; return 0; }; done
  done
  ngx_die "apt-get source nginx failed for every listed version ($versions)"
}

# A small module set: static files, index, gzip (zlib), rewrite (PCRE2), autoindex, thread
# pools (aio threads); none of the upstream modules or anything needing OpenSSL.
NGX_CONFIGURE=(
  --with-threads --with-cc-opt=-O2
  --without-http_charset_module --without-http_ssi_module --without-http_userid_module
  --without-http_auth_basic_module --without-http_mirror_module --without-http_geo_module
  --without-http_split_clients_module --without-http_referer_module
  --without-http_proxy_module --without-http_fastcgi_module --without-http_uwsgi_module
  --without-http_scgi_module --without-http_grpc_module --without-http_memcached_module
  --without-http_limit_conn_module --without-http_limit_req_module
  --without-http_empty_gif_module --without-http_browser_module
  --without-http_upstream_hash_module --without-http_upstream_ip_hash_module
  --without-http_upstream_least_conn_module --without-http_upstream_random_module
  --without-http_upstream_keepalive_module --without-http_upstream_zone_module
)

# ngx_build_one SRC VARIANT LD-OPT: configure (only when the arguments changed) into its own
# build folder, make, and always relink (libhakmem.a is not in nginx's Makefile).
ngx_build_one() {
  local src=$1 variant=$2 ldopt=$3 obj=$NGX_WORK/obj-$2
  local args=(--prefix="$NGX_WORK/prefix-unused" --builddir="$obj" "${NGX_CONFIGURE[@]}")
  [[ -n $ldopt ]] && args+=(--with-ld-opt="$ldopt")
  if [[ ! -f $obj/Makefile || "$(cat "$obj/.configure-args" 2>/dev/null)" != "${args[*]}" ]]; then
    ngx_log "configure nginx ($variant)"
    rm -rf "$obj"
    (cd "$src" && ./configure "${args[@]}" >"$NGX_WORK/configure-$variant.log" 2>&1) ||
      { tail -20 "$NGX_WORK/configure-$variant.log" >&2; ngx_die "configure ($variant)"; }
    printf '%s' "${args[*]}" >"$obj/.configure-args"
  fi
  rm -f "$obj/nginx"
  ngx_log "make nginx ($variant)"
  (cd "$src" && make -f "$obj/Makefile" -j"${NGX_JOBS:-2}" >"$NGX_WORK/make-$variant.log" 2>&1) ||
    { tail -30 "$NGX_WORK/make-$variant.log" >&2; ngx_die "make ($variant)"; }
}

# Everything: packages, source, hakmem (release, own build folder), both nginx builds.
ngx_build() {
  ngx_install_pkgs build-essential cmake libck-dev dpkg-dev libpcre2-dev zlib1g-dev curl python3 "$@"
  local src
  src=$(ngx_source)
  ngx_log "nginx source: $src"
  cmake -S "$NGX_ROOT" -B "$NGX_WORK/hakmem" -DCMAKE_BUILD_TYPE=Release -DHAKMEM_BUILD_TESTS=OFF \
    -DHAKMEM_BUILD_BENCH=OFF -DHAKMEM_BUILD_STRESS=OFF >/dev/null
  cmake --build "$NGX_WORK/hakmem" -j"${NGX_JOBS:-2}" --target hakmem_static >/dev/null
  ngx_build_one "$src" hakmem "-Wl,--whole-archive $NGX_HAKMEM_LIB -Wl,--no-whole-archive -lpthread"
  ngx_build_one "$src" glibc ""
  NGX_SRC=$src
}

# Static checks: in the hakmem build the malloc family is defined in the executable and
# exported (so shared libraries bind to it), and hakmem's own code is there; the glibc build
# takes malloc from libc. Then the runtime probe: `nginx -t` (parses the config, allocates,
# exits through exit()) prints a HAKMEM_DEBUG=json report with mallocs counted, and the
# glibc build prints none.
ngx_verify_link() {
  local h=${NGX_BIN[hakmem]} g=${NGX_BIN[glibc]} f conf=$1
  # (captured first: `nm | grep -q` fails under pipefail when grep stops reading early)
  local hdef gund hall gall hldd
  hdef=$(nm -D --defined-only "$h") gund=$(nm -D --undefined-only "$g")
  hall=$(nm "$h") gall=$(nm "$g") hldd=$(ldd "$h")
  for f in malloc free calloc realloc posix_memalign aligned_alloc memalign malloc_usable_size; do
    grep -qE " T $f\$" <<<"$hdef" || ngx_die "hakmem build: $f is not defined and exported (nm -D)"
    grep -qE " U $f(@|\$)" <<<"$gund" && continue
    [[ $f == malloc || $f == free ]] && ngx_die "glibc build: $f is not taken from libc (nm -D)"
  done
  grep -q ' hak_' <<<"$hall" || ngx_die "hakmem build: no hak_ symbols (nm)"
  grep -q ' hak_' <<<"$gall" && ngx_die "glibc build: has hak_ symbols"
  grep -q 'libhakmem' <<<"$hldd" && ngx_die "hakmem build: expected a static link, ldd shows libhakmem.so"
  ngx_log "nm: the hakmem build defines and exports the malloc family; the glibc build imports it"
  ngx_log "ldd (hakmem build): $(ldd "$h" | awk '{print $1}' | tr '\n' ' ')"

  local out mallocs started parsed last
  out=$(HAKMEM_DEBUG=json "$h" -t -q -p "$(dirname "$conf")" -c "$conf" 2>&1 >/dev/null) ||
    ngx_die "hakmem build: nginx -t failed: $out"
  mallocs=$(printf '%s\n' "$out" | ngx_report_mallocs) || ngx_die "hakmem build: no HAKMEM_DEBUG=json report from nginx -t: $out"
  read -r started parsed mallocs last <<<"$mallocs"
  ((started == 1 && parsed == 1 && mallocs >= 20)) ||
    ngx_die "hakmem build: nginx -t: $started reports, $parsed whole, $mallocs mallocs (want 1, 1, >= 20)"
  ngx_log "runtime probe: nginx -t (hakmem build) reported $mallocs mallocs through hakmem"
  out=$(HAKMEM_DEBUG=json "$g" -t -q -p "$(dirname "$conf")" -c "$conf" 2>&1 >/dev/null) ||
    ngx_die "glibc build: nginx -t failed: $out"
  [[ $out != *'"hakmem"'* ]] || ngx_die "glibc build: printed a hakmem report"
}

# stdin: text with HAKMEM_DEBUG=json reports among other lines. stdout: "STARTED PARSED
# MALLOCS LAST": reports begun, reports that parse as JSON, mallocs (per-class and large)
# summed over those, and 1 if the last report parses (0 if not); fails if none began.
# Reports of processes that exit together can be cut into each other: hakmem writes a report
# line longer than its 1 KiB buffer in pieces (nginx workers do this at reload and stop), so
# only the beginnings are counted for all of them. The master exits after its workers, so
# its report, the last, is whole.
ngx_report_mallocs() {
  python3 -c '
import json, sys
started = parsed = total = 0
last = 0
for line in sys.stdin:
    k = line.count("{\"hakmem\":")
    if not k:
        continue
    started += k
    try:
        h = json.loads(line)["hakmem"]
    except ValueError:
        last = 0
        continue
    parsed += 1
    last = 1
    total += sum(c["mallocs"] for c in h["size_classes"]) + h["counters"]["large_alloc"]
print(started, parsed, total, last)
sys.exit(0 if started else 1)
'
}

# A port free on 127.0.0.1 now (the kernel picks it); ngx_start retries if it is taken later.
ngx_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ngx_write_conf PREFIX PORT WORKERS [EXTRA]: nginx.conf in PREFIX, root PREFIX/html.
ngx_write_conf() {
  local pfx=$1 port=$2 workers=$3 extra=${4:-}
  mkdir -p "$pfx/logs" "$pfx/html"
  cat >"$pfx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $workers;
pid $pfx/nginx.pid;
error_log $pfx/logs/error.log notice;
thread_pool default threads=4;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    access_log $pfx/logs/access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$port;
        server_name localhost;
        root $pfx/html;
        location /aio/ { aio threads; sendfile off; output_buffers 2 64k; }
        location /gz/ { gzip on; gzip_types *; gzip_min_length 0; gzip_comp_level 6; }
        location /dir/ { autoindex on; }
        location /rw/ { rewrite ^/rw/(.*)\$ /\$1 last; }
        $extra
    }
}
EOF
}

# ngx_children PID: the pids whose parent is PID (from /proc; procps may be missing).
ngx_children() {
  local parent=$1 s line fields
  for s in /proc/[0-9]*/stat; do
    { line=$(<"$s"); } 2>/dev/null || continue   # gone since the glob
    fields=${line##*) }        # state ppid ...
    fields=${fields#* }
    [[ ${fields%% *} == "$parent" ]] && { s=${s#/proc/}; echo "${s%/stat}"; }
  done
  return 0
}

ngx_rss_kib() { awk -v f="${2:-VmRSS}:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# ngx_start NAME BUILD PREFIX WORKERS [EXTRA-CONF]: a server on a free port of 127.0.0.1;
# sets NGX_PORT. The master runs in the foreground of a background job (daemon off), its
# stderr (where HAKMEM_DEBUG reports go) in PREFIX/stderr. Retries on a taken port. Ready
# when the workers are there and one request to / got an answer (one access log line).
ngx_start() {
  local name=$1 build=$2 pfx=$3 workers=$4 extra=${5:-} try port pid
  for try in 1 2 3 4 5; do
    port=$(ngx_free_port)
    ngx_write_conf "$pfx" "$port" "$workers" "$extra"
    : >"$pfx/logs/error.log"
    HAKMEM_DEBUG=${NGX_HAKMEM_DEBUG:-} "${NGX_BIN[$build]}" -p "$pfx" -c "$pfx/nginx.conf" \
      </dev/null >"$pfx/stdout" 2>"$pfx/stderr" &
    pid=$!
    NGX_PID[$name]=$pid NGX_PFX[$name]=$pfx
    local i
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      # workers first, then one request (so exactly one access log line comes from here)
      if (($(ngx_children "$pid" | wc -l) >= workers)) && curl -s -o /dev/null "http://127.0.0.1:$port/"; then
        NGX_PORT=$port
        ngx_log "$name: nginx ($build) master $pid on 127.0.0.1:$port, $workers workers"
        return 0
      fi
      sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
    unset "NGX_PID[$name]"
    grep -q 'Address already in use' "$pfx/logs/error.log" "$pfx/stderr" 2>/dev/null && continue
    cat "$pfx/stderr" "$pfx/logs/error.log" >&2 2>/dev/null || true
    ngx_die "$name: nginx ($build) did not start"
  done
  ngx_die "$name: no free port after 5 tries"
}

# ngx_stop NAME: graceful stop (SIGQUIT through `nginx -s quit`), wait for the master;
# returns the master's exit status. Workers must be gone too.
ngx_stop() {
  local name=$1 pid=${NGX_PID[$1]:-} pfx=${NGX_PFX[$1]} kids rc=0 i
  [[ -n $pid ]] || return 0
  kids=$(ngx_children "$pid")
  kill -QUIT "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { ngx_log "$name: master $pid still running, SIGKILL"; kill -KILL "$pid"; }
  wait "$pid" || rc=$?
  unset "NGX_PID[$name]"
  for i in $kids; do
    kill -0 "$i" 2>/dev/null && { ngx_log "$name: worker $i left behind, SIGKILL"; kill -KILL "$i"; rc=99; }
  done
  return $rc
}

# Stop every server started here (trap ... EXIT); workers of a killed master too.
ngx_cleanup() {
  local name pid kids
  for name in "${!NGX_PID[@]}"; do
    pid=${NGX_PID[$name]}
    kids=$(ngx_children "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    sleep 0.3
    kill -KILL "$pid" $kids 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  NGX_PID=()
}
