// GPT-2's input embedding: each position's vector is its token's row of wte plus its position's row
// of wpe. wte has Vp (padded vocabulary) rows because the lm head shares it (tied embeddings).
#pragma once

#include <cstddef>

namespace coldstart::cpu {

// out[b, t, :] = wte[tokens[b, t], :] + wpe[t, :]. Tokens must lie in [0, Vp); the data loader checks.
void encoder_forward(float* out /*B,T,C*/, const int* tokens /*B,T*/, const float* wte /*Vp,C*/,
                     const float* wpe /*maxT,C*/, int B, int T, int C);

// Accumulates dwte[tokens[b, t], :] += dout[b, t, :] and dwpe[t, :] += dout[b, t, :].
// A token repeated in the batch adds into the same row of dwte, so the work is split over channels
// (never over positions): each thread owns a channel range and adds the positions in order, which
// needs no atomics and gives the same bits for any thread count.
void encoder_backward(float* dwte /*Vp,C*/, float* dwpe /*maxT,C*/, const float* dout /*B,T,C*/,
                      const int* tokens /*B,T*/, int B, int T, int C);

}  // namespace coldstart::cpu
