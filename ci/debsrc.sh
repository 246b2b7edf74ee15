#!/usr/bin/env bash
# Make `apt-get source` work: for every enabled `deb` source of this machine that has no
# matching deb-src entry yet (same URI and suite, in any file), add one with the same URIs,
# suites, components and Signed-By; then apt-get update if that changed anything or no source
# index has been fetched yet. Idempotent; shared by ci/nginx.sh and ci/redis.sh. Run as root.
# Reads deb822 files (sources.list.d/*.sources) and one-line files (sources.list, *.list);
# writes only $out.
set -euo pipefail
etc=${HAKMEM_APT_ETC:-/etc/apt}   # another directory only to test this script (no update then)
out=$etc/sources.list.d/hakmem-debsrc.sources
lists=/var/lib/apt/lists

files=()
for f in "$etc"/sources.list "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
  [[ -f $f && $f != "$out" ]] && files+=("$f")
done

# Pass 1 collects every entry as (types, uris, suites, components, signed-by); an entry
# counts as covered when each of its URI/suite pairs has a deb-src somewhere. The uncovered
# `deb` entries are printed as deb822 paragraphs with `Types: deb-src`.
body=""
if ((${#files[@]})); then
  body=$(awk '
    function keep(ty, ur, su, co, si, off,   a, b, i, j, nu, ns) {
      if (off) return
      nu = split(ur, a, /[[:space:]]+/); ns = split(su, b, /[[:space:]]+/)
      if ((" " ty " ") ~ / deb-src /)
        for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) src[a[i] " " b[j]] = 1
      if ((" " ty " ") ~ / deb / && ur != "" && su != "") {
        n++; U[n] = ur; S[n] = su; C[n] = co; G[n] = si
      }
    }
    function flush() {
      if (inpara) keep(ty, ur, su, co, si, off)
      inpara = 0; ty = ur = su = co = si = ""; off = 0; last = ""
    }
    function trim(s) { gsub(/^[[:space:]]+|[[:space:]]+$/, "", s); return s }
    FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
    deb822 && /^[[:space:]]*$/ { flush(); next }
    /^[[:space:]]*#/ { next }
    deb822 && /^[[:space:]]/ { if (last == "c") co = co " " trim($0); next }  # continuation
    deb822 {
      inpara = 1; k = tolower(substr($0, 1, index($0, ":") - 1)); v = trim(substr($0, index($0, ":") + 1))
      last = ""
      if (k == "types") ty = v; else if (k == "uris") ur = v; else if (k == "suites") su = v
      else if (k == "components") { co = v; last = "c" } else if (k == "signed-by") si = v
      else if (k == "enabled" && tolower(v) == "no") off = 1
      next
    }
    $1 == "deb" || $1 == "deb-src" {   # one-line format: deb [opts] uri suite comp...
      t = $1; i = 2; sig = ""
      if ($2 ~ /^\[/) {
        while (i <= NF) { if ($i ~ /^\[?signed-by=/) { sig = $i; sub(/^\[?signed-by=/, "", sig); sub(/\]$/, "", sig) }
                          if ($(i++) ~ /\]$/) break }
      }
      comps = ""; for (j = i + 2; j <= NF; j++) comps = comps (comps == "" ? "" : " ") $j
      keep(t, $i, $(i + 1), comps, sig, 0)
    }
    END {
      flush()
      for (e = 1; e <= n; e++) {
        nu = split(U[e], a, /[[:space:]]+/); ns = split(S[e], b, /[[:space:]]+/); need = 0
        for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) if (!((a[i] " " b[j]) in src)) need = 1
        if (!need) continue
        if (printed++) print ""
        print "Types: deb-src"; print "URIs: " U[e]; print "Suites: " S[e]
        if (C[e] != "") print "Components: " C[e]
        if (G[e] != "") print "Signed-By: " G[e]
      }
    }
  ' "${files[@]}")
fi

changed=0
if [[ -z $body ]]; then
  [[ -f $out ]] && { rm -f "$out"; changed=1; }
else
  body="# Written by hakmem ci/debsrc.sh: deb-src entries mirroring the deb sources."$'\n'"$body"
  if [[ ! -f $out ]] || [[ "$(cat "$out")" != "$body" ]]; then
    printf '%s\n' "$body" >"$out"
    changed=1
    echo "ci/debsrc.sh: wrote $out" >&2
  fi
fi

[[ $etc == /etc/apt ]] || exit 0
if ((changed)) || ! compgen -G "$lists/*_Sources*" >/dev/null; then
  apt-get update -qq
fi
