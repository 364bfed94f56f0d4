// fuzz/fuzz_shard.cpp: the token shard reader (dataloader.h): the up-front check of a file, then
// a shuffling loader over it (B 2, T 4, vocabulary 512) drawing batches across an epoch's end
// and restoring a saved position. Seeds: fuzz/corpus/shard.
#include "fuzz_util.h"
#include "../dataloader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_scratch_path("shard.bin");
    const int B = 2, T = 4, V = 512;
    fuzz_write_file(path, data, size);
    DataLoader d{};
    auto body = [&] {
        dataloader_init(&d, path.c_str(), B, T, V, true, 7, "-i");
        int64_t batches = dataloader_batches_per_epoch(&d);
        fuzz_require(batches >= 1);
        DataLoaderState saved = d.state;
        for (int64_t i = 0; i < batches + 2 && i < 64; i++) {
            dataloader_next_batch(&d);
            for (int k = 0; k < B * T; k++) fuzz_require(d.inputs[k] >= 0 && d.inputs[k] < V && d.targets[k] < V);
        }
        dataloader_restore(&d, saved);
        dataloader_next_batch(&d);
    };
    // the loader's own file is closed by dataloader_free, before fuzz_run closes what is left
    fuzz_run([&] {
        try {
            body();
        } catch (const FailError&) {
            dataloader_free(&d);
            throw;
        }
        dataloader_free(&d);
    });
    return 0;
}
