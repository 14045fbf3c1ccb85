#include "dist/rendezvous.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
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

std::string this_machine() {
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::strcpy(host, "unknown-host");
    std::string boot;
    std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
    return boot.empty() ? std::string(host) : std::string(host) + "/" + boot;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// ---- fs: rank 0 writes "coldstart-rendezvous <machine> <pid> <bytes>\n<blob>" atomically. A file left by
// a killed run on this machine names a dead process and is waited out until rank 0 replaces it; a process
// on another machine cannot be asked, so a file from there is taken as it is ----

std::string by_file(int rank, const std::string& blob, const Rendezvous& how) {
    if (how.dir.empty()) fail("-pi fs: the processes meet through a shared folder: give -pf DIR (or -o DIR)");
    make_directories(how.dir);
    const std::string path = rendezvous_file(how.dir);
    const std::string machine = this_machine();
    if (rank == 0) {
        const std::string text = format("coldstart-rendezvous %s %d %zu\n", machine.c_str(), int(getpid()), blob.size()) + blob;
        write_atomically(path, [&](File& f) { f.write_all(text.data(), text.size()); });
        return blob;
    }
    const auto start = Clock::now();
    while (true) {
        if (file_exists(path)) {
            const std::string text = read_whole_file(path);
            char writer[512] = {};
            int pid = 0;
            size_t bytes = 0, header = 0;
            if (std::sscanf(text.c_str(), "coldstart-rendezvous %511s %d %zu\n%zn", writer, &pid, &bytes, &header) == 3 && header > 0 &&
                text.size() == header + bytes && (writer != machine || process_alive(pid)))
                return text.substr(header);
        }
        if (seconds_since(start) > how.timeout_seconds)
            fail("rank %d: waited %.0f s for rank 0 to write %s (is rank 0 running, with the same -pf?)", rank, how.timeout_seconds,
                 path.c_str());
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// ---- tcp: rank 0 listens on the port of -ps, on every local address family (IPv4 and IPv6), and sends
// the blob (its length first) to every rank that connects; the others try each address HOST resolves to
// until rank 0 is up ----

struct Address {
    std::string host, port;
};

// "HOST:PORT", where HOST may be an IPv6 address in brackets ("[::1]:29500").
Address parse_server(const std::string& server) {
    const size_t colon = server.rfind(':');
    if (server.empty() || colon == std::string::npos || colon == 0 || colon + 1 == server.size())
        fail("-ps '%s': expected rank 0's address as HOST:PORT (e.g. node001:29500)", server.c_str());
    std::string host = server.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return {host, server.substr(colon + 1)};
}

struct Socket {
    int fd = -1;
    Socket() = default;
    Socket(Socket&& other) noexcept : fd(other.fd) { other.fd = -1; }
    Socket(const Socket&) = delete;
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

// Every address that getaddrinfo gives for host (nullptr: this machine's wildcard addresses, to listen
// on). A name that does not resolve throws, or with `error` given, returns none and says why there.
std::vector<std::vector<char>> resolve(const char* host, const std::string& port, const std::string& server,
                                       std::string* error = nullptr) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (!host) hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    if (const int err = getaddrinfo(host, port.c_str(), &hints, &found)) {
        const std::string why = format("-ps %s: cannot resolve the address: %s", server.c_str(), gai_strerror(err));
        if (!error) fail("%s", why.c_str());
        *error = why;
        return {};
    }
    if (error) error->clear();
    std::vector<std::vector<char>> addresses;
    for (const addrinfo* a = found; a; a = a->ai_next)
        addresses.emplace_back(reinterpret_cast<char*>(a->ai_addr), reinterpret_cast<char*>(a->ai_addr) + a->ai_addrlen);
    freeaddrinfo(found);
    return addresses;
}

const sockaddr* as_sockaddr(const std::vector<char>& address) { return reinterpret_cast<const sockaddr*>(address.data()); }

// One listener per address family this machine has, so that a rank reaches rank 0 whichever family its
// name resolves to first. The IPv6 one takes IPv6 alone, so that both can bind the same port; a family
// the kernel lacks, or has no address of, is left out.
std::vector<Socket> listen_everywhere(const Address& a, int backlog, const std::string& server) {
    std::vector<Socket> listeners;
    for (const std::vector<char>& address : resolve(nullptr, a.port, server)) {
        const int family = as_sockaddr(address)->sa_family;
        const auto cannot = [&] {
            fail("-ps %s: rank 0 cannot listen on port %s (%s): %s", server.c_str(), a.port.c_str(), family == AF_INET6 ? "IPv6" : "IPv4",
                 std::strerror(errno));
        };
        Socket s;
        s.fd = socket(family, SOCK_STREAM, 0);
        if (s.fd < 0) {
            if (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT) continue;
            cannot();
        }
        const int yes = 1;
        setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
        if (family == AF_INET6) setsockopt(s.fd, IPPROTO_IPV6, IPV6_V6ONLY, &yes, sizeof(yes));
        if (bind(s.fd, as_sockaddr(address), socklen_t(address.size())) != 0) {
            if (errno == EADDRNOTAVAIL) continue;
            cannot();
        }
        if (listen(s.fd, backlog) != 0) cannot();
        listeners.push_back(std::move(s));
    }
    if (listeners.empty()) fail("-ps %s: rank 0 has no IPv4 or IPv6 address to listen on", server.c_str());
    return listeners;
}

std::string by_tcp(int rank, int size, const std::string& blob, const Rendezvous& how) {
    const Address a = parse_server(how.server);
    const auto start = Clock::now();
    if (rank == 0) {
        std::vector<Socket> listeners = listen_everywhere(a, size, how.server);
        std::vector<pollfd> waiting;
        for (const Socket& l : listeners) waiting.push_back({l.fd, POLLIN, 0});
        const uint64_t bytes = blob.size();
        for (int served = 1; served < size;) {
            const double left = how.timeout_seconds - seconds_since(start);
            if (left <= 0)
                fail("-ps %s: rank 0 waited %.0f s for the other ranks to connect; %d of %d did (are they running, with the same -ps?)",
                     how.server.c_str(), how.timeout_seconds, served - 1, size - 1);
            const int ready = poll(waiting.data(), waiting.size(), int(left * 1000) + 1);
            if (ready < 0 && errno != EINTR) fail("-ps %s: waiting for rank connections failed: %s", how.server.c_str(), std::strerror(errno));
            for (pollfd& w : waiting) {
                if (ready <= 0 || !(w.revents & POLLIN) || served == size) continue;
                Socket peer;
                peer.fd = accept(w.fd, nullptr, nullptr);
                if (peer.fd < 0) fail("-ps %s: accepting rank connections failed: %s", how.server.c_str(), std::strerror(errno));
                send_all(peer.fd, &bytes, sizeof(bytes), how.server);
                send_all(peer.fd, blob.data(), blob.size(), how.server);
                ++served;
            }
        }
        return blob;
    }
    std::string unresolved;
    while (true) {
        // Resolved again on every try: rank 0's name may appear in DNS only once its machine is up.
        for (const std::vector<char>& address : resolve(a.host.c_str(), a.port, how.server, &unresolved)) {
            Socket s;
            s.fd = socket(as_sockaddr(address)->sa_family, SOCK_STREAM, 0);
            uint64_t bytes = 0;
            if (s.fd >= 0 && connect(s.fd, as_sockaddr(address), socklen_t(address.size())) == 0 && receive_all(s.fd, &bytes, sizeof(bytes)) &&
                bytes < (1u << 20)) {
                std::string out(bytes, '\0');
                if (receive_all(s.fd, out.data(), out.size())) return out;
            }
        }
        if (seconds_since(start) > how.timeout_seconds) {
            if (!unresolved.empty()) fail("rank %d: %s (for %.0f s)", rank, unresolved.c_str(), how.timeout_seconds);
            fail("rank %d: waited %.0f s to reach rank 0 at %s (is rank 0 running, is the port open?)", rank, how.timeout_seconds,
                 how.server.c_str());
        }
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
