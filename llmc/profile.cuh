// llmc/profile.cuh: where one training step's time goes, by kind of work, measured with CUDA
// events on the trainer's stream. The trainer calls prof_mark("name") before each piece of work;
// the time from one mark to the next is charged to the first one's name, and names repeat across
// layers, so the table adds up e.g. the 12 layers' attention forwards into one row.
//
// Off unless a StepProfile is active (dev/cuda/step_profile.cu turns it on for one step): then
// prof_mark is one pointer test, so the marks cost nothing in training. When on, the events split
// the step into ~400 pieces; the gaps they add are small beside the kernels of GPT-2 124M at
// B = 128, but the profiled step is a little slower than a plain one, so step_profile also
// prints the plain step's time.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>
#include "cuda_common.cuh"

struct StepProfile {
    std::vector<cudaEvent_t> events;  // a pool, recorded in order
    std::vector<const char*> names;   // names[i]: the work after events[i]
};

static StepProfile* g_profile = NULL;

inline void prof_mark(const char* name) {
    if (!g_profile) return;
    StepProfile* p = g_profile;
    if (p->names.size() == p->events.size()) {
        cudaEvent_t e;
        cudaCheck(cudaEventCreate(&e));
        p->events.push_back(e);
    }
    cudaCheck(cudaEventRecord(p->events[p->names.size()], g_stream));
    p->names.push_back(name);
}

// Starts recording (the marks that follow are timed).
inline void prof_begin(StepProfile* p) {
    p->names.clear();
    g_profile = p;
}

struct ProfileRow {
    std::string name;
    double ms;
    int pieces;
};

// Ends recording with a final mark, waits for the stream, and sums the time per name (rows in
// descending time). Returns the total in ms.
inline double prof_end(StepProfile* p, std::vector<ProfileRow>* rows) {
    prof_mark("(end)");
    g_profile = NULL;
    cudaCheck(cudaStreamSynchronize(g_stream));
    rows->clear();
    double total = 0.0;
    for (size_t i = 0; i + 1 < p->names.size(); i++) {
        float ms = 0.0f;
        cudaCheck(cudaEventElapsedTime(&ms, p->events[i], p->events[i + 1]));
        total += ms;
        auto it = std::find_if(rows->begin(), rows->end(), [&](const ProfileRow& r) { return r.name == p->names[i]; });
        if (it == rows->end()) {
            rows->push_back({p->names[i], (double)ms, 1});
        } else {
            it->ms += ms;
            it->pieces++;
        }
    }
    std::sort(rows->begin(), rows->end(), [](const ProfileRow& a, const ProfileRow& b) { return a.ms > b.ms; });
    return total;
}

inline void prof_free(StepProfile* p) {
    for (cudaEvent_t e : p->events) cudaCheck(cudaEventDestroy(e));
    p->events.clear();
    p->names.clear();
}
