// Ranks as forked processes, for the tests of what runs between processes (the communicators, the
// emulated NCCL).
#pragma once

#include <functional>
#include <vector>

namespace test_util {

// Runs body(rank) in `ranks` forked processes and returns their exit statuses. A child reports a failed
// check through its exit status (doctest's machinery stays in the parent); an exception ends it with 98,
// named on stderr; one that hangs (a collective that never completes) is ended by SIGALRM after two
// minutes rather than hanging the suite.
std::vector<int> in_processes(int ranks, const std::function<int(int)>& body);

}  // namespace test_util
