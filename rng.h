// rng.h: a small seeded random number generator (xoshiro128**-style state of two uint64 via
// splitmix64 seeding) used for init, data shuffling and sampling. Its whole state is two
// integers, so checkpoints can save it and a resumed run draws exactly the same numbers.
#pragma once

#include <cmath>
#include <cstdint>

struct Rng {
    uint64_t s[2];
};

inline uint64_t splitmix64(uint64_t* x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline void rng_seed(Rng* r, uint64_t seed) {
    r->s[0] = splitmix64(&seed);
    r->s[1] = splitmix64(&seed);
}

// xorshift128+: fast, and plenty for shuffling and initialisation.
inline uint64_t rng_u64(Rng* r) {
    uint64_t a = r->s[0];
    const uint64_t b = r->s[1];
    r->s[0] = b;
    a ^= a << 23;
    r->s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return r->s[1] + b;
}

// Uniform in [0, 1) with 24 random bits (exactly representable in fp32).
inline float rng_uniform(Rng* r) { return (float)(rng_u64(r) >> 40) / 16777216.0f; }

// Uniform integer in [0, n).
inline uint64_t rng_below(Rng* r, uint64_t n) { return rng_u64(r) % n; }

// Standard normal by Box-Muller (one value per call; simple beats fast for initialisation).
inline float rng_normal(Rng* r) {
    double u1 = ((rng_u64(r) >> 11) + 1.0) / 9007199254740993.0;  // (0, 1]
    double u2 = (rng_u64(r) >> 11) / 9007199254740992.0;          // [0, 1)
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

// One draw from the categorical distribution probs[i] * scale, i < n (scale: 1 / sum(probs)
// when they are unnormalized): the first i whose running sum passes one uniform draw; n - 1 when
// rounding leaves the whole sum at or below it. Both trainers' samples draw their tokens here.
inline int rng_categorical(Rng* r, const float* probs, int n, float scale = 1.0f) {
    float coin = rng_uniform(r), cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += probs[i] * scale;
        if (coin < cdf) return i;
    }
    return n - 1;
}

// Fisher-Yates shuffle of indices 0..n-1.
inline void rng_permutation(Rng* r, uint32_t* out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(r, i);
        uint32_t t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
}
