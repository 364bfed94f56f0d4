// fuzz/fuzz_util.h: what every libFuzzer harness shares. The project's readers take file paths,
// so each input is written to a scratch file first; a reader's fail() throws FailError in these
// builds (-DFUZZING, common.h), which counts as the clean end of an input, and the files it left
// open are closed. Anything else (a sanitizer report, a crash, a hang, a broken invariant via
// fuzz_require) is a finding.
#pragma once

#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <string>
#include "../common.h"

// Scratch space for this process: /dev/shm when there is one (no disk traffic per input).
inline std::string fuzz_scratch_path(const char* name) {
    const char* base = path_exists("/dev/shm") ? "/dev/shm" : "/tmp";
    return std::string(base) + "/normfree_fuzz_" + std::to_string(getpid()) + "_" + name;
}

inline void fuzz_write_file(const std::string& path, const uint8_t* data, size_t size) {
    FILE* f = fopen(path.c_str(), "wb");
    if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path.c_str());
        abort();  // the harness's own scratch space failing is not a finding about the project
    }
}

// Runs one reader over one input: fail() is a normal return; the open files are closed after.
// FUZZ_VERBOSE=1 prints each input's outcome (its error line, or "accepted") to stderr, to see
// how deep the seeds reach: FUZZ_VERBOSE=1 out/fuzz/fuzz_setup fuzz/corpus/setup/*
template <typename F> inline void fuzz_run(F body) {
    static const bool verbose = getenv("FUZZ_VERBOSE") != NULL;
    try {
        body();
        if (verbose) fprintf(stderr, "accepted\n");
    } catch (const FailError& e) {
        if (verbose) fprintf(stderr, "error: %s\n", e.what());
    }
    fuzz_close_open_files();
}

// An invariant the readers promise; breaking it is a finding (libFuzzer saves the input).
#define fuzz_require(cond)                                                         \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "fuzz invariant broken: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                               \
        }                                                                          \
    } while (0)

// The readers' notes go to stdout: keep the fuzzer's output to its own lines.
inline void fuzz_quiet_stdout() {
    if (freopen("/dev/null", "w", stdout) == NULL) abort();
}
