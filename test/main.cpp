// The doctest runner for the CPU suite. It ends with the line "N passed, M failed" (test cases), which CI
// reads, after doctest's own summary.
#define DOCTEST_CONFIG_IMPLEMENT
#include "test/doctest_counts.h"

int main(int argc, char** argv) { return doctest_counts::run(argc, argv); }
