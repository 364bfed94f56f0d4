// fuzz/fuzz_state_file.cpp: the training-state reader (checkpoint.h: read_state_file) for a
// model of 1200 parameters and 1 slope whose DONE_ marker says step 3, as -y 1 reads it.
// Seeds: fuzz/corpus/state_file (written by fuzz/make_seeds.py).
#include <vector>
#include "fuzz_util.h"
#include "../checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_scratch_path("state.bin");
    const size_t num_params = 1200;
    const int num_slopes = 1, marker = 3;
    fuzz_write_file(path, data, size);
    fuzz_run([&] {
        std::vector<float> m(num_params + num_slopes), v(num_params + num_slopes);
        TrainState s = {};
        read_state_file(path.c_str(), marker, &s, num_params, num_slopes, m.data(), v.data());
        // what the reader promises the trainer
        fuzz_require(s.step == marker && s.adam_t >= 0 && s.skipped >= 0 && s.adam_t + s.skipped <= s.step);
        fuzz_require(s.loader.shard >= 0 && s.loader.position >= 0 && s.loader.epoch >= 0);
        fuzz_require(!s.scaler.present || (std::isfinite(s.scaler.scale) && s.scaler.scale > 0.0f));
        for (size_t i = 0; i < m.size(); i++) fuzz_require(std::isfinite(m[i]) && std::isfinite(v[i]) && v[i] >= 0.0f);
    });
    return 0;
}
