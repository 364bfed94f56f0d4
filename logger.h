// logger.h: the run's log files under -o DIR, shared by both trainers.
//   main.log       llm.c's lines: "s:12 trl:3.141593 lr:0.000300 norm:0.912345" and "s:12 tel:..."
//   entropy.tsv    step, layer, head, entropy (nats): per-head attention entropy
//   slopes.tsv     step, layer, slope: learnable leaky-ReLU slopes (layer -1 = the global slope)
//   nonfinite.tsv  step, layer, att, ffn: non-finite attention scores / FFN activations per layer
//   paper.tsv      step, layer, head, nan_entries, entropy_nansum: the paper's Figure 5 metrics
//                  (NaN attention probabilities in one micro-batch; entropy with NaN rows as 0)
// Files are flushed every step, so a killed run keeps everything logged so far. Resuming from
// the checkpoint of step k first drops rows of steps >= k (the resumed run writes them again).
#pragma once

#include <dirent.h>
#include <string>
#include <vector>
#include "common.h"

struct Logger {
    bool active = false;
    std::string dir;
    FILE* main = NULL;
    FILE* entropy = NULL;
    FILE* slopes = NULL;
    FILE* nonfinite = NULL;
    FILE* paper = NULL;
};

inline std::string log_path(const std::string& dir, const char* name) { return dir + "/" + name; }

// Step number of a log line: "s:12 ..." in main.log, the first column in the TSVs; -1 for headers.
inline long log_line_step(const char* line, bool is_main) {
    if (is_main) {
        if (strncmp(line, "s:", 2) != 0) return -1;
        return strtol(line + 2, NULL, 10);
    }
    if (line[0] < '0' || line[0] > '9') return -1;
    return strtol(line, NULL, 10);
}

// Rewrites a log keeping its header and rows of steps < keep_below (crash-safe: tmp + rename).
inline void truncate_log(const std::string& path, long keep_below, bool is_main) {
    FILE* in = fopen(path.c_str(), "r");
    if (in == NULL) return;
    std::string tmp;
    FILE* out = begin_atomic_write(path.c_str(), &tmp);
    char line[8192];
    while (fgets(line, sizeof(line), in)) {
        if (log_line_step(line, is_main) < keep_below) fputs(line, out);
    }
    fclose(in);
    finish_atomic_write(out, tmp, path.c_str());
}

inline FILE* open_log(const std::string& dir, const char* name, const char* header, long resume_step, bool is_main) {
    std::string path = log_path(dir, name);
    bool existed = path_exists(path.c_str());
    if (resume_step >= 0 && existed) truncate_log(path, resume_step, is_main);
    FILE* f = fopen(path.c_str(), "a");
    if (f == NULL) fail("cannot write log '%s': %s", path.c_str(), strerror(errno));
    if (!existed && header) fputs(header, f);
    return f;
}

// A fresh run refuses a directory that already holds a run, so nothing written is ever lost.
inline void check_fresh_output_dir(const std::string& dir) {
    std::string main_log = log_path(dir, "main.log");
    if (path_exists(main_log.c_str()))
        fail("output dir '%s' already holds a run (main.log): resume it with -y 1, or choose another -o", dir.c_str());
    DIR* d = opendir(dir.c_str());
    if (d == NULL) return;
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "DONE_", 5) == 0 || strncmp(e->d_name, "model_", 6) == 0) {
            closedir(d);
            fail("output dir '%s' already holds checkpoints: resume with -y 1, or choose another -o", dir.c_str());
        }
    }
    closedir(d);
}

// Opens the logs under dir; resume_step < 0 for a fresh run.
inline void logger_init(Logger* lg, const std::string& dir, long resume_step, bool has_slopes) {
    lg->active = !dir.empty();
    if (!lg->active) return;
    lg->dir = dir;
    lg->main = open_log(dir, "main.log", NULL, resume_step, true);
    lg->entropy = open_log(dir, "entropy.tsv", "step\tlayer\thead\tentropy\n", resume_step, false);
    lg->nonfinite = open_log(dir, "nonfinite.tsv", "step\tlayer\tatt\tffn\n", resume_step, false);
    lg->paper = open_log(dir, "paper.tsv", "step\tlayer\thead\tnan_entries\tentropy_nansum\n", resume_step, false);
    if (has_slopes) lg->slopes = open_log(dir, "slopes.tsv", "step\tlayer\tslope\n", resume_step, false);
}

inline void logger_train(Logger* lg, int step, float loss, float lr, float norm) {
    if (!lg->active) return;
    fprintf(lg->main, "s:%d trl:%.6f lr:%.6f norm:%.6f\n", step, loss, lr, norm);
}

inline void logger_val(Logger* lg, int step, float loss) {
    if (!lg->active) return;
    fprintf(lg->main, "s:%d tel:%.6f\n", step, loss);
    fflush(lg->main);
}

// entropy: (L, NH), layer-major.
inline void logger_entropy(Logger* lg, int step, int L, int NH, const float* entropy) {
    if (!lg->active) return;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++) fprintf(lg->entropy, "%d\t%d\t%d\t%.6f\n", step, l, h, entropy[l * NH + h]);
}

// n == L: one slope per layer; n == 1: the global slope, logged as layer -1.
inline void logger_slopes(Logger* lg, int step, int n, int L, const float* slopes) {
    if (!lg->active || lg->slopes == NULL) return;
    if (n == 1 && L != 1) fprintf(lg->slopes, "%d\t-1\t%.6f\n", step, slopes[0]);
    else for (int l = 0; l < n; l++) fprintf(lg->slopes, "%d\t%d\t%.6f\n", step, l, slopes[l]);
}

inline void logger_nonfinite(Logger* lg, int step, int L, const long* att, const long* ffn) {
    if (!lg->active) return;
    for (int l = 0; l < L; l++) fprintf(lg->nonfinite, "%d\t%d\t%ld\t%ld\n", step, l, att[l], ffn[l]);
}

// The paper's metrics (doc/fp16-and-nans.md) of one logged step from what a trainer summed over
// the rows it measured, n = L * NH entries each: sums (2, n) = the NaN-ignoring entropy sums, then
// the NaN rows. entropy_nansum: the mean over the rows; nan_entries: the NaN attention
// probabilities of one forward pass (T per NaN row), averaged over the rows / rows_per_pass passes.
// Both trainers convert through this, so paper.tsv means the same from either.
inline void paper_metrics(int n, const double* sums, double rows, double rows_per_pass, int T, float* entropy_nansum,
                          float* nan_entries) {
    for (int i = 0; i < n; i++) {
        entropy_nansum[i] = rows > 0 ? (float)(sums[i] / rows) : 0.0f;
        nan_entries[i] = rows > 0 ? (float)(sums[n + i] * T * rows_per_pass / rows) : 0.0f;
    }
}

// The paper's metrics (paper_metrics), (L, NH) layer-major each.
inline void logger_paper(Logger* lg, int step, int L, int NH, const float* nan_entries, const float* entropy_nansum) {
    if (!lg->active) return;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++)
            fprintf(lg->paper, "%d\t%d\t%d\t%.1f\t%.6f\n", step, l, h, nan_entries[l * NH + h], entropy_nansum[l * NH + h]);
}

inline void logger_flush(Logger* lg) {
    if (!lg->active) return;
    FILE* files[] = {lg->main, lg->entropy, lg->slopes, lg->nonfinite, lg->paper};
    for (FILE* f : files) if (f && fflush(f) != 0) fail("cannot write logs in '%s': %s", lg->dir.c_str(), strerror(errno));
}

inline void logger_close(Logger* lg) {
    if (!lg->active) return;
    logger_flush(lg);
    FILE* files[] = {lg->main, lg->entropy, lg->slopes, lg->nonfinite, lg->paper};
    for (FILE* f : files) if (f) fclose(f);
    lg->active = false;
}
