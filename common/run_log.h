// The machine-readable log of a run: one JSON object per line (JSON Lines), flushed after every line so
// a crash loses at most the line being written. The README documents the records.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace coldstart {

class RunLog {
public:
    RunLog() = default;  // writes nothing until open() (runs without an output directory)
    ~RunLog();
    void open(const std::string& path);  // truncates
    // Continues a log after a resume: keeps its first keep_bytes (what the checkpoint had seen) and
    // appends, so no record is duplicated.
    void reopen_at(const std::string& path, size_t keep_bytes);
    size_t bytes_written() const;  // the log's length so far (0 without a file)
    RunLog(const RunLog&) = delete;
    RunLog& operator=(const RunLog&) = delete;
    void write(const nlohmann::json& record);

private:
    FILE* f_ = nullptr;
    std::string path_;
};

}  // namespace coldstart
