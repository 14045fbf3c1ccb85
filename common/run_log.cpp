#include "common/run_log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>

#include "common/error.h"

namespace coldstart {

void RunLog::open(const std::string& path) {
    if (f_) std::fclose(f_);
    path_ = path;
    f_ = std::fopen(path.c_str(), "w");
    if (!f_) fail("cannot open %s for writing: %s", path.c_str(), std::strerror(errno));
}

RunLog::~RunLog() {
    if (f_) std::fclose(f_);
}

void RunLog::reopen_at(const std::string& path, size_t keep_bytes) {
    if (f_) std::fclose(f_);
    path_ = path;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) fail("cannot resume: %s is missing: %s", path.c_str(), std::strerror(errno));
    if (size_t(st.st_size) < keep_bytes)
        fail("cannot resume: %s has %lld bytes, fewer than the %zu its checkpoint had written (the log was replaced "
             "by another run's); it is left as it is",
             path.c_str(), (long long)st.st_size, keep_bytes);
    if (truncate(path.c_str(), off_t(keep_bytes)) != 0)
        fail("cannot cut %s back to the %zu bytes of the checkpoint: %s", path.c_str(), keep_bytes, std::strerror(errno));
    f_ = std::fopen(path.c_str(), "a");
    if (!f_) fail("cannot open %s for appending: %s", path.c_str(), std::strerror(errno));
}

size_t RunLog::bytes_written() const { return f_ ? size_t(std::ftell(f_)) : 0; }

double RunLog::elapsed() const {
    return elapsed_before_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

static std::string utc_now() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return text;
}

void RunLog::write(const nlohmann::json& record) {
    if (!f_) return;
    nlohmann::json stamped = record;
    stamped["time"] = utc_now();
    stamped["elapsed_s"] = std::round(elapsed() * 1000) / 1000;
    // Samples can end inside a multi-byte character: invalid UTF-8 becomes U+FFFD instead of an exception.
    const std::string line = stamped.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
        fail("%s: write failed: %s", path_.c_str(), std::strerror(errno));
}

std::string run_id_of_log(const std::string& path) {
    std::ifstream in(path);
    std::string first_line;
    if (!in || !std::getline(in, first_line)) return "";
    const nlohmann::json record = nlohmann::json::parse(first_line, nullptr, false);
    if (!record.is_object() || !record.contains("run_id") || !record["run_id"].is_string()) return "";
    return record["run_id"].get<std::string>();
}

}  // namespace coldstart
