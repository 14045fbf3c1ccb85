#include "common/run_log.h"

#include <cerrno>
#include <cstring>
#include <unistd.h>

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
    if (truncate(path.c_str(), off_t(keep_bytes)) != 0)
        fail("cannot cut %s back to the %zu bytes of the checkpoint: %s", path.c_str(), keep_bytes, std::strerror(errno));
    f_ = std::fopen(path.c_str(), "a");
    if (!f_) fail("cannot open %s for appending: %s", path.c_str(), std::strerror(errno));
}

size_t RunLog::bytes_written() const { return f_ ? size_t(std::ftell(f_)) : 0; }

void RunLog::write(const nlohmann::json& record) {
    if (!f_) return;
    // Samples can end inside a multi-byte character: invalid UTF-8 becomes U+FFFD instead of an exception.
    const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
        fail("%s: write failed: %s", path_.c_str(), std::strerror(errno));
}

}  // namespace coldstart
