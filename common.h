// common.h: error handling and checked file I/O shared by every program in the project.
// Bad input must end with ONE clear line on stderr and a non-zero exit, never a crash, so all
// file and memory access goes through these helpers, which name the file and say how to fix it.
#pragma once

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

// Exit codes, documented in the README.
#define EXIT_BAD_INPUT 1   // usage error, bad flag value, missing/corrupt file, shapes that do not fit
#define EXIT_NONFINITE 3   // training stopped on a non-finite value under --on-nan stop

// Under MPI, multiproc.h points this at a function that prints the message and aborts every
// rank (MPI_Abort), so that an error on one rank leaves no other rank waiting in a collective.
inline void (*fail_hook)(const char* message, int exit_code) = NULL;

// Prints "error: <message>" as one line on stderr and exits with EXIT_BAD_INPUT.
[[noreturn]] __attribute__((format(printf, 1, 2))) inline void fail(const char* fmt, ...) {
    char message[2048];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    if (fail_hook) fail_hook(message, EXIT_BAD_INPUT);
    fprintf(stderr, "error: %s\n", message);
    fflush(stdout);
    exit(EXIT_BAD_INPUT);
}

inline void* malloc_or_fail(size_t bytes, const char* what) {
    void* p = malloc(bytes > 0 ? bytes : 1);
    if (p == NULL) fail("out of memory allocating %zu bytes for %s (try a smaller -b, -t or model)", bytes, what);
    return p;
}

inline void* calloc_or_fail(size_t count, size_t size, const char* what) {
    void* p = calloc(count > 0 ? count : 1, size);
    if (p == NULL) fail("out of memory allocating %zu bytes for %s (try a smaller -b, -t or model)", count * size, what);
    return p;
}

// Opens a file; `fix` says what the user should do if it is missing (e.g. "run make data").
inline FILE* fopen_or_fail(const char* path, const char* mode, const char* fix) {
    FILE* f = fopen(path, mode);
    if (f == NULL) fail("cannot open '%s': %s (%s)", path, strerror(errno), fix);
    return f;
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

// Strict number parsing for flags and descriptors: the whole string must be the number.
inline bool parse_int(const char* s, long* out) {
    if (s == NULL || *s == '\0') return false;
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = v;
    return true;
}

inline bool parse_float(const char* s, float* out) {
    if (s == NULL || *s == '\0') return false;
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
