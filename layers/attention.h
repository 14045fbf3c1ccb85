// Causal multi-head self-attention (the part between the qkv projection and the output projection).
//
// qkv holds, per token, the query, key and value vectors side by side (3C floats); head h uses channels
// [h*hs, (h+1)*hs) of each, hs = C / NH. Position t attends to positions 0..t with weights
// softmax(q_t . k_t2 / sqrt(hs)), and its output for head h is the weighted sum of those values.
#pragma once

namespace coldstart::cpu {

// att keeps the softmax probabilities for the backward pass; entries above the diagonal (the future,
// masked out) are set to 0 so the buffer is fully defined. Throws coldstart::Error if NH does not divide C.
void attention_forward(float* out /*B,T,C*/, float* att /*B,NH,T,T*/, const float* qkv /*B,T,3C*/, int B, int T,
                       int C, int NH);

// Accumulates into dqkv. Parallel over (batch, head) pairs: the key and value gradients of a position
// collect contributions from every later position of the same head, so one thread owns a whole head and
// adds them in order (no atomics; the same bits for any thread count). The gradients of the attention
// scores live only in two per-thread rows of T floats, not in B*NH*T*T buffers.
void attention_backward(float* dqkv /*B,T,3C*/, const float* dout /*B,T,C*/, const float* qkv /*B,T,3C*/,
                        const float* att /*B,NH,T,T*/, int B, int T, int C, int NH);

}  // namespace coldstart::cpu
