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
    RunLog(const RunLog&) = delete;
    RunLog& operator=(const RunLog&) = delete;
    void write(const nlohmann::json& record);

private:
    FILE* f_ = nullptr;
    std::string path_;
};

}  // namespace coldstart
