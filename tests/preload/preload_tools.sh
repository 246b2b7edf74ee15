# preload_tools: allocation-heavy Debian tools with and without hakmem: xz (2 threads) and
# gzip round trips, gawk building a big associative array, and git (if installed) building
# and repacking a repository with fixed dates, so that its hashes are deterministic.
. "$(dirname "$0")/lib.sh"
gen_input 150000 "$W/input.txt"

run_pair xz 3 "xz -T2 -3 --block-size=1MiB -c '$W/input.txt' | tee '$W/xz.tmp' | cksum && xz -d -c '$W/xz.tmp' | cksum"
# gzip works in static buffers: only the shell is sure to allocate
run_pair gzip 1 "gzip -6 -c '$W/input.txt' | gzip -d -c | cksum"
run_pair awk 2 "awk -F '\t' '{ sum[\$1] += \$2; len[\$1] += length(\$3); seen[\$3 \":\" \$1]++ }
    END { for (k in sum) print k, sum[k], len[k]; print \"distinct\", length(seen) }' '$W/input.txt' | sort | cksum"

if command -v git >/dev/null 2>&1; then
    cat >"$W/git.sh" <<'GIT'
set -eu
export HOME="$1" GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org
export GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org
export GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'
r="$1/repo.$$"
rm -rf "$r"
git init -q -b main "$r"
cd "$r"
i=0
while [ $i -lt 300 ]; do
    mkdir -p "d$((i % 17))"
    awk -v i=$i 'BEGIN { for (j = 0; j < 200 + i; j++) print "line", j, "of file", i, j * i % 997 }' >"d$((i % 17))/f$i.txt"
    i=$((i + 1))
done
git add -A
git commit -q -m "first"
sed -i 's/of file/in file/' d3/*.txt d5/*.txt
git rm -q d7/f7.txt
git commit -q -a -m "second"
git log --stat --format='%H %s'
git diff --stat HEAD~1 HEAD
git archive HEAD | cksum
git repack -adf -q
git fsck --strict --no-progress
git count-objects -v | grep -v size
git rev-parse HEAD^{tree}
cd / && rm -rf "$r"
GIT
    run_pair git 3 "sh '$W/git.sh' '$W'"
else
    echo "git not installed: skipped the git part"
fi
