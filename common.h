// common.h: error handling and checked file I/O shared by every program in the project.
// Bad input must end with ONE clear line on stderr and a non-zero exit, never a crash, so all
// file and memory access goes through these helpers, which name the file and say how to fix it.
#pragma once

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

// Exit codes, documented in doc/reference.md ("Command line").
#define EXIT_BAD_INPUT 1   // usage error, bad flag value, missing/corrupt file, shapes that do not fit
#define EXIT_NONFINITE 3   // training stopped on a non-finite value under --on-nan stop

// Fuzz builds (-DFUZZING) turn fail() into a C++ exception, so a harness can treat a clean
// "error:" as an ordinary return and go on to the next input; every other build exits.
#ifdef FUZZING
#include <stdexcept>
struct FailError : std::runtime_error { using std::runtime_error::runtime_error; };
#endif

// Under MPI, multiproc.h points this at a function that prints the message and aborts every
// rank (MPI_Abort), so that an error on one rank leaves no other rank waiting in a collective.
inline void (*fail_hook)(const char* message, int exit_code) = NULL;

// Prints "error: <message>" as one line on stderr and exits with `code` (under MPI, through
// fail_hook: every rank ends with it).
[[noreturn]] inline void vfail_with_code(int code, const char* fmt, va_list args) {
#ifdef FUZZING
    (void)code;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, args);
    throw FailError(msg);
#else
    char message[2048];
    vsnprintf(message, sizeof(message), fmt, args);
    if (fail_hook) fail_hook(message, code);
    fprintf(stderr, "error: %s\n", message);
    fflush(stdout);
    exit(code);
#endif
}

// Bad input: one "error:" line, exit EXIT_BAD_INPUT.
[[noreturn]] __attribute__((format(printf, 1, 2))) inline void fail(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vfail_with_code(EXIT_BAD_INPUT, fmt, args);
}

// A stop of the NaN guard (--on-nan stop semantics): one "error:" line, exit EXIT_NONFINITE.
[[noreturn]] __attribute__((format(printf, 1, 2))) inline void fail_nonfinite(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vfail_with_code(EXIT_NONFINITE, fmt, args);
}

// True when none of x[0..n) is inf or NaN.
inline bool all_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!std::isfinite(x[i])) return false;
    return true;
}

// Refuses an allocation larger than the machine's memory (1 GiB in fuzz builds) before trying
// it: such a request comes from an input that cannot be served, and would otherwise end in a
// crash, the OOM killer or an overcommitted buffer that fails later.
inline void check_allocation_or_fail(size_t count, size_t size, const char* what) {
#ifdef FUZZING
    const double limit = 1073741824.0;
#else
    static const double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    const double limit = ram > 0 ? ram : 1e300;
#endif
    double bytes = (double)count * (double)size;
    if (bytes > limit)
        fail("%s would need %.3g GB, more than this machine's %.3g GB of memory (try a smaller -b, -t, -d or model)",
             what, bytes / 1e9, limit / 1e9);
}

inline void* malloc_or_fail(size_t bytes, const char* what) {
    check_allocation_or_fail(bytes, 1, what);
    void* p = malloc(bytes > 0 ? bytes : 1);
    if (p == NULL) fail("out of memory allocating %zu bytes for %s (try a smaller -b, -t or model)", bytes, what);
    return p;
}

inline void* calloc_or_fail(size_t count, size_t size, const char* what) {
    check_allocation_or_fail(count, size, what);
    void* p = calloc(count > 0 ? count : 1, size);
    if (p == NULL) fail("out of memory allocating %zu bytes for %s (try a smaller -b, -t or model)", count * size, what);
    return p;
}

#ifdef FUZZING
// The files the readers hold open: a fail() (an exception here) skips their fclose, so the
// harness closes what is left after each input (fuzz_close_open_files).
#include <vector>
inline std::vector<FILE*>& fuzz_open_files() { static std::vector<FILE*> files; return files; }
inline void fuzz_close_open_files() {
    for (FILE* f : fuzz_open_files()) fclose(f);
    fuzz_open_files().clear();
}
#endif

// Opens a file; `fix` says what the user should do if it is missing (e.g. "run make data").
inline FILE* fopen_or_fail(const char* path, const char* mode, const char* fix) {
    FILE* f = fopen(path, mode);
    if (f == NULL) fail("cannot open '%s': %s (%s)", path, strerror(errno), fix);
#ifdef FUZZING
    fuzz_open_files().push_back(f);
#endif
    return f;
}

// Closes a file fopen_or_fail opened (for reading: a close error loses nothing).
inline void close_file(FILE* f) {
#ifdef FUZZING
    auto& open = fuzz_open_files();
    for (size_t i = 0; i < open.size(); i++)
        if (open[i] == f) { open.erase(open.begin() + i); break; }
#endif
    fclose(f);
}

// Reads exactly count items or fails naming the file: a short read means a truncated file.
inline void fread_or_fail(void* dst, size_t size, size_t count, FILE* f, const char* path) {
    size_t got = fread(dst, size, count, f);
    if (got != count) {
        fail("'%s' is truncated or unreadable: wanted %zu bytes, got %zu (re-create the file)",
             path, size * count, size * got);
    }
}

inline void fwrite_or_fail(const void* src, size_t size, size_t count, FILE* f, const char* path) {
    if (fwrite(src, size, count, f) != count) fail("cannot write '%s': %s (check free disk space)", path, strerror(errno));
}

inline void fseek_or_fail(FILE* f, long offset, const char* path) {
    if (fseek(f, offset, SEEK_SET) != 0) fail("cannot seek in '%s': %s", path, strerror(errno));
}

// Size in bytes of an open file (its whole length, whatever the read position).
inline long file_size_or_fail(FILE* f, const char* path) {
    struct stat st;
    if (fstat(fileno(f), &st) != 0) fail("cannot stat '%s': %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) fail("'%s' is a directory, expected a file", path);
    return (long)st.st_size;
}

inline bool path_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// mkdir -p; fails if a component exists but is not a directory (e.g. -o names a file).
inline void make_dirs_or_fail(const char* path) {
    std::string p(path);
    for (size_t i = 1; i <= p.size(); i++) {
        if (i == p.size() || p[i] == '/') {
            std::string prefix = p.substr(0, i);
            struct stat st;
            if (stat(prefix.c_str(), &st) == 0) {
                if (!S_ISDIR(st.st_mode)) fail("output path '%s' is a file, not a directory (choose another -o)", prefix.c_str());
            } else if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
                fail("cannot create directory '%s': %s", prefix.c_str(), strerror(errno));
            }
        }
    }
}

// Crash-safe writes: write to "<path>.tmp", flush it to disk, then rename over <path>. A kill in
// the middle leaves only a stray .tmp; the previous <path> is intact until the rename.
inline FILE* begin_atomic_write(const char* path, std::string* tmp_path) {
    *tmp_path = std::string(path) + ".tmp";
    FILE* f = fopen(tmp_path->c_str(), "wb");
    if (f == NULL) fail("cannot write '%s': %s", tmp_path->c_str(), strerror(errno));
    return f;
}

inline void finish_atomic_write(FILE* f, const std::string& tmp_path, const char* path) {
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) fail("cannot write '%s': %s (check free disk space)", tmp_path.c_str(), strerror(errno));
    if (fclose(f) != 0) fail("cannot close '%s': %s", tmp_path.c_str(), strerror(errno));
    if (rename(tmp_path.c_str(), path) != 0) fail("cannot rename '%s' to '%s': %s", tmp_path.c_str(), path, strerror(errno));
}

// Strict number parsing for flags and descriptors: the whole string must be the number, in
// plain decimal: no leading blank or '+', no hex ("0x10", "0x1p-3"), no inf or nan.
inline bool is_plain_decimal(const char* s, bool allow_fraction) {
    const char* p = s + (*s == '-');
    if (!isdigit((unsigned char)*p) && !(allow_fraction && *p == '.' && isdigit((unsigned char)p[1]))) return false;
    for (; *p; p++) {
        if (isdigit((unsigned char)*p)) continue;
        if (!allow_fraction) return false;
        if (*p == '.') continue;
        if ((*p == 'e' || *p == 'E') && (isdigit((unsigned char)p[1]) || ((p[1] == '-' || p[1] == '+') && isdigit((unsigned char)p[2])))) {
            p += (p[1] == '-' || p[1] == '+');
            continue;
        }
        return false;
    }
    return true;
}

inline bool parse_int(const char* s, long* out) {
    if (s == NULL || !is_plain_decimal(s, false)) return false;
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = v;
    return true;
}

inline bool parse_float(const char* s, float* out) {
    if (s == NULL || !is_plain_decimal(s, true)) return false;
    char* end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno != 0 || *end != '\0' || v != v || v - v != 0.0f) return false;  // rejects nan and inf
    *out = v;
    return true;
}

// Header slots hold fp32 values as their bit patterns.
inline int32_t float_bits(float x) { int32_t i; memcpy(&i, &x, 4); return i; }
inline float bits_float(int32_t i) { float x; memcpy(&x, &i, 4); return x; }
