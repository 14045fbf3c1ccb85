// Prints the speed-of-light table of one training step (model/roofline.h): per kernel the bytes and
// FLOPs it must move and do, its bound and its least time on an H100 SXM and an H200, the sums and the
// tokens/s they allow. A model, never a measurement.
//   build/tools/roofline [descriptor (d12)] [B (64)] [T (1024)]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/error.h"
#include "model/gpt2_config.h"
#include "model/roofline.h"

int main(int argc, char** argv) {
    using namespace coldstart;
    try {
        const GPT2Config config = config_from_descriptor(argc > 1 ? argv[1] : "d12");
        const int B = argc > 2 ? std::atoi(argv[2]) : 64, T = argc > 3 ? std::atoi(argv[3]) : 1024;
        if (B < 1 || T < 1 || T > config.max_seq_len) fail("expected B >= 1 and 1 <= T <= %d, got B=%d T=%d", config.max_seq_len, B, T);
        std::fputs(roofline_table(config, B, T).c_str(), stdout);
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
