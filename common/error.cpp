#include "common/error.h"

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace coldstart {

static std::string vformat(const char* fmt, va_list args) {
    va_list copy;
    va_copy(copy, args);
    const int n = vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    std::string s(n > 0 ? size_t(n) : 0, '\0');
    if (n > 0) vsnprintf(s.data(), s.size() + 1, fmt, args);
    return s;
}

std::string format(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string s = vformat(fmt, args);
    va_end(args);
    return s;
}

void fail(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string s = vformat(fmt, args);
    va_end(args);
    throw Error(s);
}

File::File(const std::string& path, const char* mode) : path_(path) {
    f_ = fopen(path.c_str(), mode);
    if (!f_) {
        const bool writing = strchr(mode, 'w') || strchr(mode, 'a');
        fail("cannot open %s for %s: %s", path.c_str(), writing ? "writing" : "reading", strerror(errno));
    }
}

File::~File() {
    if (f_) fclose(f_);
}

void File::read_exact(void* dst, size_t n, const char* field) {
    const size_t got = fread(dst, 1, n, f_);
    if (got != n) {
        if (ferror(f_)) fail("%s: read error in %s: %s", path_.c_str(), field, strerror(errno));
        fail("%s: file is truncated: %s needs %zu bytes, only %zu remain", path_.c_str(), field, n, got);
    }
}

void File::write_all(const void* src, size_t n) {
    if (n == 0) return;
    if (fwrite(src, 1, n, f_) != n) fail("%s: write failed: %s", path_.c_str(), strerror(errno));
}

void File::seek(size_t offset) {
    if (fseeko(f_, off_t(offset), SEEK_SET) != 0) fail("%s: seek to byte %zu failed: %s", path_.c_str(), offset, strerror(errno));
}

size_t File::position() { return size_t(ftello(f_)); }

size_t File::size() {
    const off_t here = ftello(f_);
    if (fseeko(f_, 0, SEEK_END) != 0) fail("%s: cannot determine size: %s", path_.c_str(), strerror(errno));
    const off_t end = ftello(f_);
    fseeko(f_, here, SEEK_SET);
    return size_t(end);
}

void File::flush_to_disk() {
    if (fflush(f_) != 0) fail("%s: write failed: %s", path_.c_str(), strerror(errno));
    if (fsync(fileno(f_)) != 0) fail("%s: sync to disk failed: %s", path_.c_str(), strerror(errno));
}

void File::close() {
    if (!f_) return;
    FILE* f = f_;
    f_ = nullptr;
    if (fclose(f) != 0) fail("%s: close failed: %s", path_.c_str(), strerror(errno));
}

std::string read_whole_file(const std::string& path) {
    File f(path, "rb");
    std::string text(f.size(), '\0');
    f.read_exact(text.data(), text.size(), "the contents");
    return text;
}

void remove_quietly(const std::string& path) { unlink(path.c_str()); }

void rename_or_fail(const std::string& from, const std::string& to) {
    if (rename(from.c_str(), to.c_str()) != 0) fail("cannot rename %s to %s: %s", from.c_str(), to.c_str(), strerror(errno));
}

bool file_exists(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

void make_directories(const std::string& path) {
    if (path.empty()) return;
    std::string partial;
    for (size_t i = 0; i <= path.size(); ++i) {
        if (i == path.size() || path[i] == '/') {
            partial = path.substr(0, i);
            if (!partial.empty() && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
                fail("cannot create directory %s: %s", partial.c_str(), strerror(errno));
        }
    }
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) fail("%s exists but is not a directory", path.c_str());
}

}  // namespace coldstart
