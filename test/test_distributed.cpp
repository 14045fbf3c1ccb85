// Data parallelism without GPUs: the ZeRO-1 partition, the rendezvous (a shared folder, TCP), the
// shared-memory communicator between real processes, optimizers stepping shards (the same result as one optimizer over everything), a state file
// written by several shards and read by any number, and the trainer on 1, 2 and 3 processes (the same
// losses and weights as one process with the same total batch, to fp32 rounding), resumed on another
// number of processes.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <omp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "common/random.h"
#include "data/model_file.h"
#include "dist/communicator.h"
#include "dist/rendezvous.h"
#include "optim/optimizer.h"
#include "optim/partition.h"
#include "test/processes.h"
#include "test/test_util.h"

using namespace coldstart;
using test_util::in_processes;
using test_util::run_command;

namespace {

// A barrier and a sum in rank order between threads: the in-process stand-in of a communicator's
// all-reduce for optimizers that step shards side by side.
class ThreadGroup {
public:
    explicit ThreadGroup(int ranks) : ranks_(ranks), slots_(size_t(ranks)) {}

    void barrier() {
        std::unique_lock<std::mutex> lock(mu_);
        const uint64_t generation = generation_;
        if (++arrived_ == ranks_) {
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return generation_ != generation; });
        }
    }

    void sum(int rank, double* v, size_t n) {
        slots_[size_t(rank)].assign(v, v + n);
        barrier();
        for (size_t i = 0; i < n; ++i) {
            double s = 0;
            for (const auto& slot : slots_) s += slot[i];
            v[i] = s;
        }
        barrier();  // nobody overwrites a slot before everyone has read it
    }

private:
    int ranks_;
    std::vector<std::vector<double>> slots_;
    std::mutex mu_;
    std::condition_variable cv_;
    int arrived_ = 0;
    uint64_t generation_ = 0;
};

}  // namespace

TEST_CASE("partition: shards cover the parameters in order, cut only between rows, never inside a vector or a tensor controlled whole") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const size_t total = ParamLayout(c).total;
    OptimizerConfig per_tensor = test_util::test_optimizer("lionar");
    per_tensor.control = ControlScope::tensor;
    for (const OptimizerConfig& opt : {test_util::test_optimizer("adamw"), test_util::test_optimizer("lionar"), per_tensor}) {
        const auto roles = tensor_roles(opt, tensors);
        for (int ranks : {1, 2, 3, 7}) {
            CAPTURE(opt.name);
            CAPTURE(ranks);
            const std::vector<size_t> offsets = partition_parameters(opt, tensors, ranks);
            REQUIRE(offsets.size() == size_t(ranks) + 1);
            CHECK(offsets.front() == 0);
            CHECK(offsets.back() == total);
            CHECK(std::is_sorted(offsets.begin(), offsets.end()));
            for (size_t cut : offsets) {
                for (size_t k = 0; k < tensors.size(); ++k) {
                    const TensorSlice& t = tensors[k];
                    if (cut <= t.offset || cut >= t.offset + t.numel) continue;  // not inside this tensor
                    CHECK_MESSAGE(t.rows > 1, "a cut inside the vector " << t.name);
                    CHECK_MESSAGE(!(roles[k].controlled && opt.control == ControlScope::tensor), "a cut inside " << t.name);
                    CHECK((cut - t.offset) % (t.numel / size_t(t.rows)) == 0);  // between rows
                }
            }
            // Balanced as far as the cuts allow: no shard is off its share by more than the largest unit
            // that cannot be cut (a row, a vector, or a tensor controlled whole).
            size_t largest_unit = 0;
            for (size_t k = 0; k < tensors.size(); ++k) {
                const bool whole = tensors[k].rows == 1 || (roles[k].controlled && opt.control == ControlScope::tensor);
                largest_unit = std::max(largest_unit, whole ? tensors[k].numel : tensors[k].numel / size_t(tensors[k].rows));
            }
            for (int r = 0; r < ranks; ++r) {
                const double share = double(total) / ranks, size = double(offsets[size_t(r) + 1] - offsets[size_t(r)]);
                CHECK(std::abs(size - share) <= double(largest_unit));
            }
        }
    }
    // rows_in_shard: the rows of each tensor that a shard holds.
    const TensorSlice& wte = tensors[0];
    CHECK(rows_in_shard(wte, {0, 24 * 10}).first == 0);
    CHECK(rows_in_shard(wte, {0, 24 * 10}).last == 10);
    CHECK(rows_in_shard(wte, {24 * 10, 24 * 200}).first == 10);
    CHECK(rows_in_shard(wte, {24 * 10, 24 * 200}).last == size_t(wte.rows));
    CHECK(rows_in_shard(tensors[1], {0, 24 * 10}).empty());
}

TEST_CASE("communicator: processes on one machine sum in rank order, scatter, gather, and notice a process that stopped") {
    test_util::TempDir dir;
    const int ranks = 3;
    const size_t n = (size_t(1) << 20) + 12345;  // more than one chunk of the shared slots
    const std::vector<int> statuses = in_processes(ranks, [&](int rank) {
        auto comm = make_shared_memory_communicator(rank, ranks, dir.path, 60);
        if (comm->rank() != rank || comm->size() != ranks) return 1;
        // all_reduce: each rank contributes rank-dependent values; every rank gets the rank-order sum.
        std::vector<float> x(n), expected(n);
        for (size_t i = 0; i < n; ++i) x[i] = float(rank + 1) * 0.1f + float(i % 97) * 1e-3f;
        for (size_t i = 0; i < n; ++i) {
            float s = 0;
            for (int r = 0; r < ranks; ++r) s += float(r + 1) * 0.1f + float(i % 97) * 1e-3f;
            expected[i] = s;
        }
        comm->all_reduce_sum(x.data(), n);
        if (x != expected) return 2;
        double d[3] = {1.0 + rank, 1e-300, -2.0 * rank};
        comm->all_reduce_sum(d, 3);
        if (d[0] != 6.0 || d[1] != 3e-300 || d[2] != -6.0) return 3;
        // reduce_scatter with uneven segments: each rank's segment holds the sum.
        const std::vector<size_t> offsets = {0, 5, n - 3, n};
        std::vector<float> y(n, float(rank + 1));
        comm->reduce_scatter_sum(y.data(), offsets);
        for (size_t i = offsets[size_t(rank)]; i < offsets[size_t(rank) + 1]; ++i)
            if (y[i] != 6.0f) return 4;
        // all_gather: segment r comes from rank r.
        std::vector<float> z(n, -1.0f);
        for (size_t i = offsets[size_t(rank)]; i < offsets[size_t(rank) + 1]; ++i) z[i] = float(rank) + float(i % 7);
        comm->all_gather(z.data(), offsets);
        for (int r = 0; r < ranks; ++r)
            for (size_t i = offsets[size_t(r)]; i < offsets[size_t(r) + 1]; ++i)
                if (z[i] != float(r) + float(i % 7)) return 5;
        comm->barrier();
        return 0;
    });
    CHECK(statuses == std::vector<int>{0, 0, 0});
    CHECK_FALSE(file_exists(dir / "coldstart_comm.shm"));  // rank 0 removes it at the end

    // A rank that ends before a collective: the others fail at once with a message that names it.
    const std::vector<int> stopped = in_processes(2, [&](int rank) {
        auto comm = make_shared_memory_communicator(rank, 2, dir.path, 60);
        if (rank == 1) return 0;  // leaves without the collective
        float x = 1;
        try {
            comm->all_reduce_sum(&x, 1);
        } catch (const Error& e) {
            return std::string(e.what()).find("rank 0 of 2: rank 1 (process") == 0 &&
                           std::string(e.what()).find("has stopped while this one waited") != std::string::npos
                       ? 7
                       : 8;
        }
        return 9;
    });
    CHECK(stopped == std::vector<int>{7, 0});
}

TEST_CASE("zero-1: optimizers stepping shards give what one optimizer gives; their state file is read by any number of shards") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const size_t n = ParamLayout(c).total;
    OptimizerConfig lionar_tensor = test_util::test_optimizer("lionar");
    lionar_tensor.control = ControlScope::tensor;
    lionar_tensor.center = true;
    OptimizerConfig lionar = test_util::test_optimizer("lionar");
    lionar.row_gains = true;
    lionar.rrc_correction = RrcCorrection::alignment;
    Rng rng(3);
    std::vector<std::vector<float>> grads(6, std::vector<float>(n));
    for (auto& g : grads)
        for (float& x : g) x = rng.normal();
    const std::vector<float> initial = test_util::random_model_params(c, 8);
    test_util::TempDir dir;
    // LionA's count of non-zero signs is summed over the shards of a tensor (integers: exact).
    for (const OptimizerConfig& opt : {test_util::test_optimizer("adamw"), test_util::test_optimizer("lion"), test_util::test_optimizer("liona"),
                                       lionar_tensor, lionar}) {
        CAPTURE(opt.name);
        auto one = make_cpu_optimizer(opt, tensors);
        std::vector<float> reference = initial;
        for (int s = 0; s < 6; ++s) one->step(reference.data(), grads[size_t(s)].data(), {1e-2f, 0.8f, s + 1});

        const int ranks = 3;
        const std::vector<size_t> offsets = partition_parameters(opt, tensors, ranks);
        ThreadGroup group(ranks);
        std::vector<std::unique_ptr<Optimizer>> shards(ranks);
        std::vector<float> w = initial;  // every shard writes only its own range
        std::vector<std::thread> threads;
        for (int r = 0; r < ranks; ++r)
            threads.emplace_back([&, r] {
                omp_set_num_threads(1);
                shards[size_t(r)] = make_cpu_optimizer(opt, tensors, {offsets[size_t(r)], offsets[size_t(r) + 1]},
                                                       [&, r](double* v, size_t count) { group.sum(r, v, count); });
                std::vector<float> mine = initial;
                for (int s = 0; s < 6; ++s) {
                    shards[size_t(r)]->step(mine.data(), grads[size_t(s)].data(), {1e-2f, 0.8f, s + 1});
                    group.barrier();  // the all-gather of a real run: here each thread keeps its own copy
                }
                std::memcpy(w.data() + offsets[size_t(r)], mine.data() + offsets[size_t(r)],
                            (offsets[size_t(r) + 1] - offsets[size_t(r)]) * sizeof(float));
            });
        for (auto& t : threads) t.join();
        // The RRC correction's signal estimate adds the shards' sums in another order: the scale moves by rounding.
        if (opt.has_rrc_correction()) CHECK(test_util::relative_error(w, reference) < 1e-6);
        else CHECK(w == reference);

        // The shards write one state file together; one optimizer and two shards read it back.
        {
            File f(dir / "state.bin", "wb");
            f.close();
        }
        for (int r = 0; r < ranks; ++r) {
            File f(dir / "state.bin", "r+b");
            save_optimizer_state(*shards[size_t(r)], f);
            f.close();
        }
        auto whole = make_cpu_optimizer(opt, tensors);
        {
            File f(dir / "state.bin", "rb");
            CHECK(load_optimizer_state(*whole, f) == f.size());
        }
        const std::vector<size_t> two = partition_parameters(opt, tensors, 2);
        std::vector<std::unique_ptr<Optimizer>> halves;
        for (int r = 0; r < 2; ++r) {
            halves.push_back(make_cpu_optimizer(opt, tensors, {two[size_t(r)], two[size_t(r) + 1]}, {}));
            File f(dir / "state.bin", "rb");
            load_optimizer_state(*halves.back(), f);
        }
        const auto layout = one->state_layout();
        for (size_t b = 0; b < layout.size(); ++b) {
            CAPTURE(layout[b].name);
            std::vector<float> expected(layout[b].count), read(layout[b].count);
            one->read_state(b, expected.data());
            whole->read_state(b, read.data());
            if (opt.has_rrc_correction()) CHECK(test_util::relative_error(read, expected) < 1e-5);
            else CHECK(read == expected);
            for (const auto& half : halves) {
                const StateBuffer part = half->state_layout()[b];
                std::vector<float> values(part.end - part.begin);
                half->read_state(b, values.data());
                CHECK(std::equal(values.begin(), values.end(), read.begin() + long(part.begin)));
            }
        }
    }
}

namespace {

const char* kParallelRun = " -e d1 -b 2 -t 16 -d 192 -l 1e-3 -c 0.1 -x 6 -v 3 -m 5 -s 0 --threads 1 --shuffle 1 --metrics-every 2";

struct RunResult {
    std::vector<double> losses;  // train and val, in order
    std::vector<float> weights;  // the final model
};

RunResult parallel_run(int processes, const std::string& out, const std::string& extra = "") {
    const std::string cmd = processes == 1 ? test_util::trainer() : "tools/launch_local.sh " + std::to_string(processes) + " " + test_util::trainer();
    const auto run = run_command(cmd + test_util::shakespeare_flags() + kParallelRun + extra + " -n 3 -o " + out);
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    RunResult r;
    for (const auto& rec : test_util::read_jsonl(out + "/log.jsonl"))
        if (rec["type"] == "train" || rec["type"] == "val") r.losses.push_back(rec["loss"].get<double>());
    r.weights = load_model_file(out + "/model_00000006.bin").params;
    return r;
}

void check_same_run(const RunResult& a, const RunResult& b, double tolerance) {
    REQUIRE(a.losses.size() == b.losses.size());
    for (size_t i = 0; i < a.losses.size(); ++i) CHECK(a.losses[i] == doctest::Approx(b.losses[i]).epsilon(tolerance));
    CHECK(test_util::relative_error(a.weights, b.weights) < tolerance);
}

}  // namespace

TEST_CASE("data parallel: 1, 2 and 3 processes give the losses and weights of one process with the same total batch") {
    test_util::TempDir dir;
    const RunResult one = parallel_run(1, dir / "one");
    for (int processes : {2, 3}) {
        CAPTURE(processes);
        const RunResult many = parallel_run(processes, dir / format("p%d", processes));
        check_same_run(many, one, 1e-5);
        const auto log = test_util::read_jsonl(dir / format("p%d/log.jsonl", processes));
        CHECK(test_util::records_of(log, "run").at(0)["processes"] == processes);
        CHECK(test_util::records_of(log, "metrics").size() == 3);
        CHECK(test_util::records_of(log, "metrics").at(0).contains("b_noise"));  // 3 or 2 micro-batches per process
    }
    // The optimizer state replicated instead of sharded: the same run.
    check_same_run(parallel_run(2, dir / "zero0", " -z 0"), one, 1e-5);
}

TEST_CASE("data parallel: a run checkpointed by 2 processes resumes on 3 and ends where one process ends") {
    test_util::TempDir dir;
    const RunResult one = parallel_run(1, dir / "one");
    const std::string flags = test_util::shakespeare_flags() + kParallelRun + " -n 3 -o " + dir / "moved";
    // Rank 0 is killed while writing the step-6 checkpoint; rank 1 notices and stops.
    const auto cut = run_command("COLDSTART_CRASH_AT=state-written:6 tools/launch_local.sh 2 " + test_util::trainer() + flags);
    CHECK(cut.exit_code != 0);
    CHECK(test_util::contains(cut.output, "rank 1: error: rank 1 of 2: rank 0 (process"));
    const auto resumed = run_command("tools/launch_local.sh 3 " + test_util::trainer() + flags + " -y 1");
    REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.output);
    CHECK(test_util::contains(resumed.output, "(step 3)"));
    RunResult moved;
    for (const auto& rec : test_util::read_jsonl(dir / "moved/log.jsonl"))
        if (rec["type"] == "train" || rec["type"] == "val") moved.losses.push_back(rec["loss"].get<double>());
    moved.weights = load_model_file(dir / "moved/model_00000006.bin").params;
    check_same_run(moved, one, 1e-5);
    CHECK(test_util::records_of(test_util::read_jsonl(dir / "moved/log.jsonl"), "resume").at(0)["processes"] == 3);
}

TEST_CASE("data parallel: the batch must divide among the processes; a rank without -pn is refused") {
    test_util::TempDir dir;
    const auto odd = run_command("tools/launch_local.sh 2 " + test_util::trainer() + test_util::shakespeare_flags() +
                                 " -e d1 -b 2 -t 16 -d 96 -x 1 -s 0 --threads 1 -o " + dir / "odd");
    CHECK(odd.exit_code == 1);
    CHECK(test_util::contains(odd.output, "error: -d 96: expected a positive multiple of B*T*processes = 2*16*2 = 64"));
    const auto alone = run_command(test_util::trainer() + test_util::shakespeare_flags() + " -e d1 -pr 1 -x 1");
    CHECK(alone.exit_code == 1);
    CHECK(test_util::contains(alone.output, "error: -pr 1: give the number of processes with -pn too"));
}

TEST_CASE("rendezvous: rank 0's blob reaches every rank through a shared folder and through TCP; a killed run's file is waited out") {
    test_util::TempDir dir;
    const std::string blob("nccl-id\0with\xff" "bytes", 18);
    const int port = 20000 + int(getpid() % 20000);  // free in practice; a clash fails the TCP case loudly
    for (const std::string method : {"fs", "tcp"}) {
        CAPTURE(method);
        const Rendezvous how{method, dir / "meet", "127.0.0.1:" + std::to_string(port), 30};
        const std::vector<int> statuses = in_processes(3, [&](int rank) {
            const std::string got = share_from_rank0(rank, 3, rank == 0 ? blob : std::string("other"), how);
            if (rank == 0) usleep(1000 * 1000);  // rank 0 lives on (in a run: in NCCL's set-up) while the others read
            return got == blob ? 0 : 1;
        });
        CHECK(statuses == std::vector<int>{0, 0, 0});
    }
    // A file left by a rank 0 that is gone: the others wait for the new one rather than read the old.
    const Rendezvous how{"fs", dir / "stale", "", 30};
    REQUIRE(in_processes(1, [&](int) { return share_from_rank0(0, 2, "old", how) == "old" ? 0 : 1; }) == std::vector<int>{0});
    const std::vector<int> fresh = in_processes(2, [&](int rank) {
        if (rank == 0) usleep(200 * 1000);  // the other rank starts first and finds only the stale file
        const std::string got = share_from_rank0(rank, 2, rank == 0 ? "new" : "", how);
        if (rank == 0) usleep(1000 * 1000);
        return got == "new" ? 0 : 1;
    });
    CHECK(fresh == std::vector<int>{0, 0});
    CHECK(test_util::error_of([&] { share_from_rank0(1, 2, "", {"tcp", "", "no-port", 1}); }) ==
          "-ps 'no-port': expected rank 0's address as HOST:PORT (e.g. node001:29500)");
    CHECK(test_util::error_of([&] { share_from_rank0(1, 2, "", {"fs", dir / "empty", "", 0.2}); }).find(
              "rank 1: waited 0 s for rank 0 to write") == 0);
}

namespace {

// A process id that no process holds any longer: a child that has ended and been collected.
int32_t ended_pid() {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, nullptr, 0);
    return int32_t(pid);
}

void write_rendezvous(const std::string& dir, const std::string& machine, int32_t pid, const std::string& blob) {
    make_directories(dir);
    const std::string text = format("coldstart-rendezvous %s %d %zu\n", machine.c_str(), int(pid), blob.size()) + blob;
    write_atomically(rendezvous_file(dir), [&](File& f) { f.write_all(text.data(), text.size()); });
}

bool has_ipv6_loopback() {
    const int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    const bool ok = bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    return ok;
}

}  // namespace

TEST_CASE("rendezvous: a file names rank 0's machine; one from another machine is taken, a dead process's on this one waited out") {
    test_util::TempDir dir;
    const int32_t dead = ended_pid();
    CHECK(!process_alive(dead));
    // Rank 0 on another machine: its process id means nothing here, so the file is read as it is.
    write_rendezvous(dir / "remote", "node017/another-boot", dead, "id-from-node017");
    CHECK(share_from_rank0(1, 2, "", {"fs", dir / "remote", "", 5}) == "id-from-node017");
    // The same file written on this machine by a process that has ended: a killed run's, not read.
    write_rendezvous(dir / "local", this_machine(), dead, "old-id");
    CHECK(test_util::error_of([&] { share_from_rank0(1, 2, "", {"fs", dir / "local", "", 0.3}); }).find(
              "rank 1: waited 0 s for rank 0 to write") == 0);
    // What rank 0 writes names this machine and this process.
    share_from_rank0(0, 2, "mine", {"fs", dir / "own", "", 5});
    CHECK(read_whole_file(rendezvous_file(dir / "own")) == format("coldstart-rendezvous %s %d 4\nmine", this_machine().c_str(), int(getpid())));
    CHECK(this_machine().find(' ') == std::string::npos);
}

TEST_CASE("rendezvous over TCP: rank 0 gives up on ranks that never connect; IPv4 and IPv6 names of this machine both reach it") {
    const int port = 20000 + int((getpid() + 7919) % 20000);
    // Rank 1 of 3 connects, rank 2 never starts: rank 0 stops after its timeout and says how many came.
    const Rendezvous late{"tcp", "", "127.0.0.1:" + std::to_string(port), 1};
    const std::vector<int> partial = in_processes(2, [&](int rank) {
        if (rank == 1) return share_from_rank0(1, 3, "", late) == "blob" ? 0 : 1;
        try {
            share_from_rank0(0, 3, "blob", late);
        } catch (const Error& e) {
            return std::string(e.what()) == "-ps 127.0.0.1:" + std::to_string(port) +
                                                ": rank 0 waited 1 s for the other ranks to connect; 1 of 2 did (are they running, with the same -ps?)"
                       ? 7
                       : 8;
        }
        return 9;
    });
    CHECK(partial == std::vector<int>{7, 0});

    std::vector<std::string> hosts = {"127.0.0.1", "localhost"};
    if (has_ipv6_loopback()) hosts.insert(hosts.end(), {"[::1]", "::1"});
    else MESSAGE("no IPv6 loopback on this machine: only IPv4 is checked");
    for (size_t i = 0; i < hosts.size(); ++i) {
        CAPTURE(hosts[i]);
        const Rendezvous how{"tcp", "", hosts[i] + ":" + std::to_string(port + 1 + int(i)), 20};
        const std::vector<int> statuses = in_processes(3, [&](int rank) {
            return share_from_rank0(rank, 3, rank == 0 ? "blob" : "", how) == "blob" ? 0 : 1;
        });
        CHECK(statuses == std::vector<int>{0, 0, 0});
    }
}
