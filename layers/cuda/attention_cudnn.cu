// cuDNN's fused flash attention, built with cuDNN's backend graph API (cudnn_graph.h) directly: the
// cudnn-frontend headers are not on the build machines. The graphs are the operation patterns that
// cuDNN's fused attention engines recognise (the same ones cudnn-frontend's SDPA nodes lower to):
//
//   forward   S = scale * Q K^T, causal mask (row >= col), softmax with its statistics
//             (max, exp, sum, stats = max + log sum, P = exp / sum), O = P V
//   backward  D = rowsum(dO * O); P = exp(scale * Q K^T (masked) - stats); dV = P^T dO;
//             dS = scale * P * (dO V^T - D); dK = dS^T Q; dQ = dS K
//
// Each graph is the lowering that cudnn-frontend's SDPA nodes produce (include/cudnn_frontend/node/
// scaled_dot_product_flash_attention.h, v1.6, the version llm.c trains with), operation for operation, so
// that cuDNN's fused engines recognise it: in the backward, the softmax statistics are subtracted after
// the mask, D ("softmax_sum") is a non-virtual fp32 tensor in our workspace, dP is multiplied by one (the
// frontend's dropout-mask slot), P = exp(...) stays fp32 for dS and only its transposed copy for P^T dO is
// bf16, as is dS's for dS^T Q; dQ = dS K is written directly, the frontend's deterministic ("dP
// workspace") form, whose workspace the plan reports (B*NH*T*T bf16 values in the frontend's estimate:
// 1.6 GB at d12, B=64, T=1024). The backend reserves it when it is made (cudnn_attention_reserve), so
// its memory plan counts it and no step allocates.
//
// The layouts are ours, expressed by strides, so nothing is copied: Q, K, V are (B, NH, T, hs) views
// of qkv (B, T, 3, NH, hs), O and dO of (B, T, NH, hs), the statistics are our lse (B, NH, T). dQ is
// written directly, not accumulated by atomics in an fp32 buffer, and engines that declare themselves
// non-deterministic are skipped: the same bits every run, as for every other kernel.
//
// A plan is built once per shape (B, T, C, NH) and cached; building takes a while (hence the
// backend keeps the sampler, whose length changes every token, on our kernel).
#include "layers/cuda/attention_cudnn.cuh"

#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "common/error.h"

namespace coldstart::cuda {
namespace {

#define CUDNN_CHECK(call)                                                                                        \
    do {                                                                                                         \
        const cudnnStatus_t cudnn_check_status_ = (call);                                                        \
        if (cudnn_check_status_ != CUDNN_STATUS_SUCCESS) {                                                       \
            char detail_[1024] = "";                                                                             \
            cudnnGetLastErrorString(detail_, sizeof detail_);                                                    \
            throw_library_error("cuDNN", #call, int(cudnn_check_status_), cudnnGetErrorString(cudnn_check_status_), \
                                detail_[0] ? detail_ : "use --attention flash (our kernel) meanwhile", __FILE__,   \
                                __LINE__);                                                                       \
        }                                                                                                        \
    } while (0)

// One backend descriptor, destroyed with its owner.
class Descriptor {
public:
    explicit Descriptor(cudnnBackendDescriptorType_t type) { CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_)); }
    ~Descriptor() { cudnnBackendDestroyDescriptor(d_); }
    Descriptor(const Descriptor&) = delete;
    Descriptor& operator=(const Descriptor&) = delete;
    cudnnBackendDescriptor_t get() const { return d_; }
    template <typename V>
    void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const V& value) {
        CUDNN_CHECK(cudnnBackendSetAttribute(d_, name, type, 1, &value));
    }
    template <typename V>
    void set_array(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const std::vector<V>& values) {
        CUDNN_CHECK(cudnnBackendSetAttribute(d_, name, type, int64_t(values.size()), values.data()));
    }
    void finalize() { CUDNN_CHECK(cudnnBackendFinalize(d_)); }

private:
    cudnnBackendDescriptor_t d_ = nullptr;
};

using Dims = std::vector<int64_t>;

Dims packed_strides(const Dims& dims) {
    Dims s(dims.size());
    int64_t p = 1;
    for (int i = int(dims.size()) - 1; i >= 0; --i) {
        s[size_t(i)] = p;
        p *= dims[size_t(i)];
    }
    return s;
}

// The uids of the tensors that are bound to memory (or to host scalars) at execution.
enum Uid : int64_t { Q = 1, K, V, O, STATS, SCALE, NEG_INF, DO, DQ, DK, DV, SOFTMAX_SUM, ONE, FIRST_VIRTUAL = 100 };

// Builds an operation graph, then the execution plan of its first deterministic engine.
class GraphBuilder {
public:
    cudnnBackendDescriptor_t tensor(const Dims& dims, const Dims& strides, cudnnDataType_t type, int64_t uid = 0,
                                    bool by_value = false) {
        auto t = std::make_unique<Descriptor>(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
        const bool is_virtual = uid == 0;
        const int64_t id = is_virtual ? next_virtual_++ : uid;
        const int64_t alignment = 16;
        t->set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, type);
        t->set_array(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims);
        t->set_array(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides);
        t->set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, id);
        t->set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, alignment);
        t->set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, is_virtual);
        if (by_value) t->set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, true);
        t->finalize();
        return keep(std::move(t));
    }
    cudnnBackendDescriptor_t virtual_tensor(const Dims& dims, cudnnDataType_t type = CUDNN_DATA_FLOAT) {
        return tensor(dims, packed_strides(dims), type);
    }
    // A host float passed by value; one descriptor per uid, however often the graph uses it.
    cudnnBackendDescriptor_t scalar(int64_t uid) {
        auto it = scalars_.find(uid);
        if (it == scalars_.end()) it = scalars_.emplace(uid, tensor({1, 1, 1, 1}, {1, 1, 1, 1}, CUDNN_DATA_FLOAT, uid, true)).first;
        return it->second;
    }

    // y = mode(x, b, t); b and t may be null. compute: the math precision (FLOAT, or INT32 / BOOLEAN
    // for index generation and comparisons); axis for GEN_INDEX.
    void pointwise(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t y,
                   cudnnBackendDescriptor_t t = nullptr, cudnnDataType_t compute = CUDNN_DATA_FLOAT, int64_t axis = -1) {
        auto pw = std::make_unique<Descriptor>(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
        pw->set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, mode);
        pw->set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, compute);
        if (axis >= 0) pw->set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, axis);
        pw->finalize();
        auto op = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
        op->set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, pw->get());
        op->set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x);
        if (b) op->set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, b);
        if (t) op->set(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, t);
        op->set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y);
        op->finalize();
        keep(std::move(pw));
        ops_.push_back(keep(std::move(op)));
    }

    void reduction(cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
        auto r = std::make_unique<Descriptor>(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
        r->set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, mode);
        r->set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT);
        r->finalize();
        auto op = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
        op->set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x);
        op->set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y);
        op->set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, r->get());
        op->finalize();
        keep(std::move(r));
        ops_.push_back(keep(std::move(op)));
    }

    void matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
        auto m = std::make_unique<Descriptor>(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
        m->set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT);
        m->finalize();
        auto op = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
        op->set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, a);
        op->set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, b);
        op->set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, c);
        op->set(CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, m->get());
        op->finalize();
        keep(std::move(m));
        ops_.push_back(keep(std::move(op)));
    }

    // y is x seen through other dims/strides (a transpose): no data moves.
    void reshape(cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
        auto op = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
        op->set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x);
        op->set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y);
        op->finalize();
        ops_.push_back(keep(std::move(op)));
    }

    // Score masking shared by both graphs: S2 = scale * S, then -inf above the diagonal.
    cudnnBackendDescriptor_t scaled_causal(cudnnBackendDescriptor_t s, const Dims& score_dims) {
        cudnnBackendDescriptor_t scaled = virtual_tensor(score_dims);
        pointwise(CUDNN_POINTWISE_MUL, s, scalar(SCALE), scaled);
        cudnnBackendDescriptor_t row = virtual_tensor(score_dims, CUDNN_DATA_INT32), col = virtual_tensor(score_dims, CUDNN_DATA_INT32);
        pointwise(CUDNN_POINTWISE_GEN_INDEX, scaled, nullptr, row, nullptr, CUDNN_DATA_INT32, 2);
        pointwise(CUDNN_POINTWISE_GEN_INDEX, scaled, nullptr, col, nullptr, CUDNN_DATA_INT32, 3);
        cudnnBackendDescriptor_t keep_mask = virtual_tensor(score_dims, CUDNN_DATA_BOOLEAN);
        pointwise(CUDNN_POINTWISE_CMP_GE, row, col, keep_mask, nullptr, CUDNN_DATA_BOOLEAN);
        cudnnBackendDescriptor_t masked = virtual_tensor(score_dims);
        pointwise(CUDNN_POINTWISE_BINARY_SELECT, scaled, scalar(NEG_INF), masked, keep_mask);  // keep ? scaled : -inf
        return masked;
    }

    struct Plan {
        std::unique_ptr<Descriptor> plan;
        std::unique_ptr<Descriptor> engine_config;  // the plan refers to it: it lives as long as the plan
        int64_t workspace = 0;
    };
    Plan build(cudnnHandle_t handle, const char* what) {
        auto graph = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
        graph->set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, handle);
        graph->set_array(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops_);
        graph->finalize();
        std::string tried;
        for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
            Descriptor heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
            heur.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, graph->get());
            heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, mode);
            if (cudnnBackendFinalize(heur.get()) != CUDNN_STATUS_SUCCESS) continue;
            int64_t count = 0;
            if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                         nullptr) != CUDNN_STATUS_SUCCESS || count <= 0)
                continue;
            std::vector<std::unique_ptr<Descriptor>> configs;
            std::vector<cudnnBackendDescriptor_t> raw;
            for (int64_t i = 0; i < count; ++i) {
                configs.push_back(std::make_unique<Descriptor>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
                raw.push_back(configs.back()->get());
            }
            CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                                 &count, raw.data()));
            for (int64_t i = 0; i < count; ++i) {
                if (!deterministic(raw[size_t(i)])) {
                    tried += " (non-deterministic engine skipped)";
                    continue;
                }
                auto plan = std::make_unique<Descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
                plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, handle);
                plan->set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, raw[size_t(i)]);
                const cudnnStatus_t status = cudnnBackendFinalize(plan->get());
                if (status != CUDNN_STATUS_SUCCESS) {
                    tried += format(" (%s)", cudnnGetErrorString(status));
                    continue;
                }
                Plan p{std::move(plan), std::move(configs[size_t(i)]), 0};
                int64_t n = 0;
                CUDNN_CHECK(cudnnBackendGetAttribute(p.plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                                     &n, &p.workspace));
                graph_ = std::move(graph);
                return p;
            }
        }
        char detail[1024] = "";
        cudnnGetLastErrorString(detail, sizeof detail);
        fail("cuDNN has no deterministic engine for the %s graph (cuDNN %zu; tried:%s; last error: %s); use --attention flash",
             what, cudnnGetVersion(), tried.empty() ? " none offered" : tried.c_str(), detail);
    }

private:
    static bool deterministic(cudnnBackendDescriptor_t config) {
        Descriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
        cudnnBackendDescriptor_t e = engine.get();
        int64_t n = 0;
        if (cudnnBackendGetAttribute(config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &e) !=
            CUDNN_STATUS_SUCCESS)
            return false;
        cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
        int64_t count = 0;
        if (cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT,
                                     &count, notes) != CUDNN_STATUS_SUCCESS)
            return false;
        for (int64_t i = 0; i < count; ++i)
            if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) return false;
        return true;
    }
    cudnnBackendDescriptor_t keep(std::unique_ptr<Descriptor> d) {
        cudnnBackendDescriptor_t raw = d->get();
        owned_.push_back(std::move(d));
        return raw;
    }
    std::vector<std::unique_ptr<Descriptor>> owned_;  // every descriptor the graph refers to
    std::vector<cudnnBackendDescriptor_t> ops_;
    std::map<int64_t, cudnnBackendDescriptor_t> scalars_;
    std::unique_ptr<Descriptor> graph_;
    int64_t next_virtual_ = FIRST_VIRTUAL;
};

struct Shape {
    int64_t B, T, C, NH;
    int64_t hs() const { return C / NH; }
    // (B, NH, T, hs) views of qkv (B, T, 3, NH, hs) and of (B, T, NH, hs) buffers
    Dims bhsd() const { return {B, NH, T, hs()}; }
    Dims qkv_strides() const { return {T * 3 * C, hs(), 3 * C, 1}; }
    Dims qkv_strides_transposed() const { return {T * 3 * C, hs(), 1, 3 * C}; }  // (B, NH, hs, T): K^T, V^T
    Dims out_strides() const { return {T * C, hs(), C, 1}; }
    Dims scores() const { return {B, NH, T, T}; }
    Dims scores_transposed_strides() const { return {NH * T * T, T * T, 1, T}; }
    Dims stats() const { return {B, NH, T, 1}; }
    bool operator<(const Shape& o) const { return std::tie(B, T, C, NH) < std::tie(o.B, o.T, o.C, o.NH); }
};

struct CachedPlan {
    std::unique_ptr<GraphBuilder> builder;  // owns the descriptors the plan refers to
    GraphBuilder::Plan plan;
};

GraphBuilder::Plan forward_graph(GraphBuilder& g, cudnnHandle_t handle, const Shape& s) {
    const Dims kt = {s.B, s.NH, s.hs(), s.T};
    auto q = g.tensor(s.bhsd(), s.qkv_strides(), CUDNN_DATA_BFLOAT16, Q);
    auto k = g.tensor(kt, s.qkv_strides_transposed(), CUDNN_DATA_BFLOAT16, K);
    auto v = g.tensor(s.bhsd(), s.qkv_strides(), CUDNN_DATA_BFLOAT16, V);
    auto o = g.tensor(s.bhsd(), s.out_strides(), CUDNN_DATA_BFLOAT16, O);
    auto stats = g.tensor(s.stats(), packed_strides(s.stats()), CUDNN_DATA_FLOAT, STATS);
    auto scores = g.virtual_tensor(s.scores());
    g.matmul(q, k, scores);
    auto masked = g.scaled_causal(scores, s.scores());
    auto row_max = g.virtual_tensor(s.stats()), shifted = g.virtual_tensor(s.scores()), e = g.virtual_tensor(s.scores());
    auto row_sum = g.virtual_tensor(s.stats()), log_sum = g.virtual_tensor(s.stats());
    auto p = g.virtual_tensor(s.scores(), CUDNN_DATA_BFLOAT16);  // P enters the second product as bf16
    g.reduction(CUDNN_REDUCE_TENSOR_MAX, masked, row_max);
    g.pointwise(CUDNN_POINTWISE_SUB, masked, row_max, shifted);
    g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, e);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, row_sum);
    g.pointwise(CUDNN_POINTWISE_LOG, row_sum, nullptr, log_sum);
    g.pointwise(CUDNN_POINTWISE_ADD, row_max, log_sum, stats);
    g.pointwise(CUDNN_POINTWISE_DIV, e, row_sum, p);
    g.matmul(p, v, o);
    return g.build(handle, "attention forward");
}

GraphBuilder::Plan backward_graph(GraphBuilder& g, cudnnHandle_t handle, const Shape& s) {
    const Dims kt = {s.B, s.NH, s.hs(), s.T};
    auto q = g.tensor(s.bhsd(), s.qkv_strides(), CUDNN_DATA_BFLOAT16, Q);
    auto k_t = g.tensor(kt, s.qkv_strides_transposed(), CUDNN_DATA_BFLOAT16, K);
    auto v_t = g.tensor(kt, s.qkv_strides_transposed(), CUDNN_DATA_BFLOAT16, V);
    auto o = g.tensor(s.bhsd(), s.out_strides(), CUDNN_DATA_BFLOAT16, O);
    auto d_o = g.tensor(s.bhsd(), s.out_strides(), CUDNN_DATA_BFLOAT16, DO);
    auto stats = g.tensor(s.stats(), packed_strides(s.stats()), CUDNN_DATA_FLOAT, STATS);
    auto dq = g.tensor(s.bhsd(), s.qkv_strides(), CUDNN_DATA_BFLOAT16, DQ);
    auto dk = g.tensor(s.bhsd(), s.qkv_strides(), CUDNN_DATA_BFLOAT16, DK);
    auto dv = g.tensor(s.bhsd(), s.qkv_strides(), CUDNN_DATA_BFLOAT16, DV);
    // D = rowsum(dO * O), kept in memory (non-virtual, as the frontend declares it)
    auto d_o_o = g.virtual_tensor(s.bhsd());
    g.pointwise(CUDNN_POINTWISE_MUL, d_o, o, d_o_o);
    auto d_sum = g.virtual_tensor(s.stats());
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, d_o_o, d_sum);
    auto softmax_sum = g.tensor(s.stats(), packed_strides(s.stats()), CUDNN_DATA_FLOAT, SOFTMAX_SUM);
    g.pointwise(CUDNN_POINTWISE_MUL, d_sum, g.scalar(ONE), softmax_sum);
    // P from the statistics
    auto scores = g.virtual_tensor(s.scores());
    g.matmul(q, k_t, scores);
    auto masked = g.scaled_causal(scores, s.scores());
    auto shifted = g.virtual_tensor(s.scores());
    g.pointwise(CUDNN_POINTWISE_SUB, masked, stats, shifted);
    auto p = g.virtual_tensor(s.scores());  // fp32: dS below uses it unrounded
    g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, p);
    // dV = P^T dO, through a bf16 transposed view of P
    auto p_t = g.tensor(s.scores(), s.scores_transposed_strides(), CUDNN_DATA_BFLOAT16);
    g.reshape(p, p_t);
    g.matmul(p_t, d_o, dv);
    // dS = scale * P * (dO V^T - D)
    auto dp = g.virtual_tensor(s.scores()), dp1 = g.virtual_tensor(s.scores()), dp2 = g.virtual_tensor(s.scores());
    auto ds = g.virtual_tensor(s.scores()), ds_scaled = g.virtual_tensor(s.scores());
    g.matmul(d_o, v_t, dp);
    g.pointwise(CUDNN_POINTWISE_MUL, dp, g.scalar(ONE), dp1);  // the frontend's dropout-mask slot
    g.pointwise(CUDNN_POINTWISE_SUB, dp1, softmax_sum, dp2);
    g.pointwise(CUDNN_POINTWISE_MUL, dp2, p, ds);
    g.pointwise(CUDNN_POINTWISE_MUL, ds, g.scalar(SCALE), ds_scaled);
    // dK = dS^T Q
    auto ds_t = g.tensor(s.scores(), s.scores_transposed_strides(), CUDNN_DATA_BFLOAT16);
    g.reshape(ds_scaled, ds_t);
    g.matmul(ds_t, q, dk);
    // dQ = dS K
    auto k = g.tensor(s.bhsd(), s.qkv_strides(), CUDNN_DATA_BFLOAT16);
    g.reshape(k_t, k);
    g.matmul(ds_scaled, k, dq);
    return g.build(handle, "attention backward");
}

// The cuDNN handle, the plans by shape, and a workspace grown to the largest plan's need.
struct State {
    cudnnHandle_t handle = nullptr;
    std::map<Shape, CachedPlan> forward, backward;
    DeviceMemory workspace;
    size_t workspace_bytes = 0;

    State() { CUDNN_CHECK(cudnnCreate(&handle)); }
    void* ensure_workspace(size_t bytes) {
        if (bytes > workspace_bytes) {
            CUDA_CHECK(cudaDeviceSynchronize());  // the old workspace may still be in use
            workspace = device_alloc(bytes, "cuDNN attention workspace");
            workspace_bytes = bytes;
        }
        return workspace.get();
    }
};

State& state() {
    static State s;  // one per process: the trainer and the tests use one GPU
    return s;
}

const GraphBuilder::Plan& plan_for(std::map<Shape, CachedPlan>& cache, const Shape& s, bool backward) {
    auto it = cache.find(s);
    if (it == cache.end()) {
        CachedPlan c;
        c.builder = std::make_unique<GraphBuilder>();
        c.plan = backward ? backward_graph(*c.builder, state().handle, s) : forward_graph(*c.builder, state().handle, s);
        it = cache.emplace(s, std::move(c)).first;
    }
    return it->second.plan;
}

void execute(const GraphBuilder::Plan& plan, const std::vector<int64_t>& uids, const std::vector<void*>& pointers,
             void* workspace) {
    Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    pack.set_array(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, uids);
    pack.set_array(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, pointers);
    pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, workspace);
    pack.finalize();
    CUDNN_CHECK(cudnnBackendExecute(state().handle, plan.plan->get(), pack.get()));
}

Shape check_shape(int B, int T_, int C, int NH) {
    if (NH <= 0 || C % NH != 0) fail("attention: %d channels do not split into %d heads", C, NH);
    const int hs = C / NH;
    if (hs % 8 != 0 || hs > 128)
        fail("--attention cudnn: head size %d is not supported (a multiple of 8, at most 128); use --attention flash", hs);
    return {B, T_, C, NH};
}

// What one forward and one backward of this shape need: cuDNN's scratch (the larger plan's), then the
// backward's row sums D (B, NH, T floats) after it, 256-byte aligned.
size_t backward_scratch_offset(const GraphBuilder::Plan& plan) { return (size_t(plan.workspace) + 255) / 256 * 256; }

size_t workspace_bytes(const Shape& s) {
    State& st = state();
    const GraphBuilder::Plan& forward = plan_for(st.forward, s, false);
    const GraphBuilder::Plan& backward = plan_for(st.backward, s, true);
    return std::max(size_t(forward.workspace), backward_scratch_offset(backward) + size_t(s.B * s.NH * s.T) * sizeof(float));
}

}  // namespace

size_t cudnn_attention_workspace_bytes(int B, int T_, int C, int NH) { return workspace_bytes(check_shape(B, T_, C, NH)); }

void cudnn_attention_reserve(int B, int T_, int C, int NH) { state().ensure_workspace(workspace_bytes(check_shape(B, T_, C, NH))); }

size_t cudnn_attention_reserved_bytes() { return state().workspace_bytes; }

void cudnn_attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T_, int C, int NH, cudaStream_t stream) {
    const NvtxRange range("cudnn attention forward");
    const Shape s = check_shape(B, T_, C, NH);
    State& st = state();
    CUDNN_CHECK(cudnnSetStream(st.handle, stream));
    const GraphBuilder::Plan& plan = plan_for(st.forward, s, false);
    void* workspace = st.ensure_workspace(size_t(plan.workspace));
    float scale = 1.0f / sqrtf(float(s.hs())), neg_inf = std::numeric_limits<float>::lowest();
    bf16* q = const_cast<bf16*>(qkv);
    execute(plan, {Q, K, V, O, STATS, SCALE, NEG_INF}, {q, q + C, q + 2 * C, out, lse, &scale, &neg_inf}, workspace);
}

void cudnn_attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, int B, int T_,
                              int C, int NH, cudaStream_t stream) {
    const NvtxRange range("cudnn attention backward");
    const Shape s = check_shape(B, T_, C, NH);
    State& st = state();
    CUDNN_CHECK(cudnnSetStream(st.handle, stream));
    const GraphBuilder::Plan& plan = plan_for(st.backward, s, true);
    // The workspace holds cuDNN's own scratch, then the row sums D (B, NH, T floats); reserved already
    // where the backend was made for this shape (ensure_workspace then allocates nothing).
    const size_t plan_bytes = backward_scratch_offset(plan);
    char* workspace = static_cast<char*>(st.ensure_workspace(plan_bytes + size_t(B) * NH * T_ * sizeof(float)));
    float scale = 1.0f / sqrtf(float(s.hs())), neg_inf = std::numeric_limits<float>::lowest(), one = 1.0f;
    bf16* q = const_cast<bf16*>(qkv);
    execute(plan, {Q, K, V, O, DO, STATS, DQ, DK, DV, SOFTMAX_SUM, SCALE, NEG_INF, ONE},
            {q, q + C, q + 2 * C, const_cast<bf16*>(out), const_cast<bf16*>(dout), const_cast<float*>(lse), dqkv, dqkv + C,
             dqkv + 2 * C, workspace + plan_bytes, &scale, &neg_inf, &one},
            workspace);
}

}  // namespace coldstart::cuda
