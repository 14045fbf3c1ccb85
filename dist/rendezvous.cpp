#include "dist/rendezvous.h"

#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "common/error.h"

namespace coldstart {

bool process_alive(int32_t pid) {
    if (kill(pid, 0) != 0 && errno != EPERM) return false;
    std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
    if (!f) return true;  // no /proc: existing is all we can tell
    char state = '?';
    const int read = std::fscanf(f, "%*d (%*[^)]) %c", &state);
    std::fclose(f);
    return read != 1 || (state != 'Z' && state != 'X');
}

std::string rendezvous_file(const std::string& dir) { return dir + "/coldstart_rendezvous"; }

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// ---- fs: rank 0 writes "coldstart-rendezvous <pid> <bytes>\n<blob>" atomically; a file left by a killed
// run names a dead process and is waited out until rank 0 replaces it ----

std::string by_file(int rank, const std::string& blob, const Rendezvous& how) {
    if (how.dir.empty()) fail("-pi fs: the processes meet through a shared folder: give -pf DIR (or -o DIR)");
    make_directories(how.dir);
    const std::string path = rendezvous_file(how.dir);
    if (rank == 0) {
        const std::string text = format("coldstart-rendezvous %d %zu\n", int(getpid()), blob.size()) + blob;
        write_atomically(path, [&](File& f) { f.write_all(text.data(), text.size()); });
        return blob;
    }
    const auto start = Clock::now();
    while (true) {
        if (file_exists(path)) {
            const std::string text = read_whole_file(path);
            int pid = 0;
            size_t bytes = 0, header = 0;
            if (std::sscanf(text.c_str(), "coldstart-rendezvous %d %zu\n%zn", &pid, &bytes, &header) == 2 && header > 0 &&
                text.size() == header + bytes && process_alive(pid))
                return text.substr(header);
        }
        if (seconds_since(start) > how.timeout_seconds)
            fail("rank %d: waited %.0f s for rank 0 to write %s (is rank 0 running, with the same -pf?)", rank, how.timeout_seconds,
                 path.c_str());
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// ---- tcp: rank 0 listens on the port of -ps and sends the blob (its length first) to every rank that
// connects; the others retry until rank 0 is up ----

struct Address {
    std::string host, port;
};

Address parse_server(const std::string& server) {
    const size_t colon = server.rfind(':');
    if (server.empty() || colon == std::string::npos || colon == 0 || colon + 1 == server.size())
        fail("-ps '%s': expected rank 0's address as HOST:PORT (e.g. node001:29500)", server.c_str());
    return {server.substr(0, colon), server.substr(colon + 1)};
}

struct Socket {
    int fd = -1;
    ~Socket() {
        if (fd >= 0) close(fd);
    }
};

void send_all(int fd, const void* data, size_t n, const std::string& where) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t sent = send(fd, p, n, MSG_NOSIGNAL);
        if (sent <= 0) fail("-ps %s: sending the rendezvous failed: %s", where.c_str(), std::strerror(errno));
        p += sent;
        n -= size_t(sent);
    }
}

bool receive_all(int fd, void* data, size_t n) {
    char* p = static_cast<char*>(data);
    while (n > 0) {
        const ssize_t got = recv(fd, p, n, 0);
        if (got <= 0) return false;
        p += got;
        n -= size_t(got);
    }
    return true;
}

std::string by_tcp(int rank, int size, const std::string& blob, const Rendezvous& how) {
    const Address a = parse_server(how.server);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (rank == 0) hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    if (const int err = getaddrinfo(rank == 0 ? nullptr : a.host.c_str(), a.port.c_str(), &hints, &found))
        fail("-ps %s: cannot resolve the address: %s", how.server.c_str(), gai_strerror(err));
    const addrinfo info = *found;
    std::vector<char> address(reinterpret_cast<char*>(found->ai_addr), reinterpret_cast<char*>(found->ai_addr) + found->ai_addrlen);
    freeaddrinfo(found);

    if (rank == 0) {
        Socket listener;
        listener.fd = socket(info.ai_family, info.ai_socktype, info.ai_protocol);
        const int yes = 1;
        setsockopt(listener.fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
        if (listener.fd < 0 || bind(listener.fd, reinterpret_cast<const sockaddr*>(address.data()), socklen_t(address.size())) != 0 ||
            listen(listener.fd, size) != 0)
            fail("-ps %s: rank 0 cannot listen on port %s: %s", how.server.c_str(), a.port.c_str(), std::strerror(errno));
        const uint64_t bytes = blob.size();
        for (int served = 1; served < size; ++served) {
            Socket peer;
            peer.fd = accept(listener.fd, nullptr, nullptr);
            if (peer.fd < 0) fail("-ps %s: accepting rank connections failed: %s", how.server.c_str(), std::strerror(errno));
            send_all(peer.fd, &bytes, sizeof(bytes), how.server);
            send_all(peer.fd, blob.data(), blob.size(), how.server);
        }
        return blob;
    }
    const auto start = Clock::now();
    while (true) {
        Socket s;
        s.fd = socket(info.ai_family, info.ai_socktype, info.ai_protocol);
        uint64_t bytes = 0;
        if (s.fd >= 0 && connect(s.fd, reinterpret_cast<const sockaddr*>(address.data()), socklen_t(address.size())) == 0 &&
            receive_all(s.fd, &bytes, sizeof(bytes)) && bytes < (1u << 20)) {
            std::string out(bytes, '\0');
            if (receive_all(s.fd, out.data(), out.size())) return out;
        }
        if (seconds_since(start) > how.timeout_seconds)
            fail("rank %d: waited %.0f s to reach rank 0 at %s (is rank 0 running, is the port open?)", rank, how.timeout_seconds,
                 how.server.c_str());
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

}  // namespace

std::string share_from_rank0(int rank, int size, const std::string& blob, const Rendezvous& how) {
    if (size == 1) return blob;
    if (how.method == "fs") return by_file(rank, blob, how);
    if (how.method == "tcp") return by_tcp(rank, size, blob, how);
    fail("-pi %s: expected fs or tcp", how.method.c_str());
}

}  // namespace coldstart
