// The emulator's own suite: the device's semantics and each of its checks shown on a deliberately broken
// kernel. Ends with "N passed, M failed", like the other suites.
#define DOCTEST_CONFIG_IMPLEMENT
#include "test/doctest_counts.h"

int main(int argc, char** argv) { return doctest_counts::run(argc, argv); }
