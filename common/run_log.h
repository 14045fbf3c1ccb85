// The machine-readable log of a run: one JSON object per line (JSON Lines), flushed after every line so
// a crash loses at most the line being written. Every record gets the wall-clock time ("time", UTC) and
// the run's elapsed seconds ("elapsed_s", counted across resumes). The README documents the records.
#pragma once

#include <chrono>
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
    // appends, so no record is duplicated. A log shorter than that is not the checkpoint's: refused, never
    // padded.
    void reopen_at(const std::string& path, size_t keep_bytes);
    // The run's seconds before this process started (a resumed run's), and since the run started.
    void set_elapsed_before(double seconds) { elapsed_before_ = seconds; }
    double elapsed() const;
    size_t bytes_written() const;  // the log's length so far (0 without a file)
    RunLog(const RunLog&) = delete;
    RunLog& operator=(const RunLog&) = delete;
    void write(const nlohmann::json& record);

private:
    FILE* f_ = nullptr;
    std::string path_;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
    double elapsed_before_ = 0;
};

// The "run_id" of the first record of the log at path, or "" when the file or the field is missing.
std::string run_id_of_log(const std::string& path);

}  // namespace coldstart
