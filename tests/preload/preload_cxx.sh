# preload_cxx: the multithreaded C++ program (std::thread, containers, shared_ptr hand-off)
# with and without hakmem; arg: the program
. "$(dirname "$0")/lib.sh"
PROG=$1
run_pair cxx 1 "'$PROG'"
