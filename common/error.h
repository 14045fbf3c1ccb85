// Folder common/: what every part of coldstart uses: errors and checked file I/O (here), the run log,
// stop signals, random numbers. The ground floor: it includes nothing of the project's (tools/check_includes.py).
//
// Errors and checked file I/O shared by every part of coldstart.
//
// Every failure becomes a coldstart::Error carrying one line that names the file, flag or field and
// what was expected. The trainer's main() catches it, prints "error: <line>" and exits non-zero, so
// library code never calls exit() and tests can assert on the message.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>

namespace coldstart {

struct Error : std::runtime_error {
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// printf-style formatting into a std::string (for error messages and log lines).
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// A FILE* that closes itself. Reads and writes through it check every call and name the path.
class File {
public:
    // mode as for fopen; throws "cannot open <path> for reading: <strerror>" on failure.
    File(const std::string& path, const char* mode);
    ~File();
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    // Reads exactly n bytes; a short read names the file, the field being read and the sizes.
    void read_exact(void* dst, size_t n, const char* field);
    void write_all(const void* src, size_t n);
    void seek(size_t offset);
    size_t size();      // total size in bytes (restores the position)
    size_t position();  // bytes from the start to where the next read or write happens
    // Flushes stdio buffers and the OS cache to disk; throws with the path on failure (disk full).
    void flush_to_disk();
    void close();  // explicit close that reports errors (the destructor cannot)
    const std::string& path() const { return path_; }
    FILE* get() { return f_; }

private:
    FILE* f_ = nullptr;
    std::string path_;
};

// Writes a file so that a crash never leaves a half-written one under the final name: the bytes go to
// "<path>.tmp", are flushed to disk, and only then renamed over <path> (rename is atomic on POSIX).
// The writer receives the open temporary file. On any error the temporary is removed and Error thrown.
template <typename Writer>
void write_atomically(const std::string& path, Writer&& writer);

std::string read_whole_file(const std::string& path);  // errors name the path

void remove_quietly(const std::string& path);
void rename_or_fail(const std::string& from, const std::string& to);
bool file_exists(const std::string& path);
void make_directories(const std::string& path);  // mkdir -p; throws with the path on failure

template <typename Writer>
void write_atomically(const std::string& path, Writer&& writer) {
    const std::string tmp = path + ".tmp";
    try {
        File f(tmp, "wb");
        writer(f);
        f.flush_to_disk();
        f.close();
        rename_or_fail(tmp, path);
    } catch (...) {
        remove_quietly(tmp);
        throw;
    }
}

}  // namespace coldstart
