// EXATRAIN_CLONES: build a CPU kernel function once per instruction set with GCC's
// target_clones (AVX-512F, AVX2, baseline); the loader picks the best copy this CPU runs. Off
// under other compilers and ThreadSanitizer (which cannot instrument the resolver), where the
// one portable copy is built.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define EXATRAIN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EXATRAIN_CLONES
#endif
