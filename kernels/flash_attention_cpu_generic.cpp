// The flash attention body (flash_attention_cpu.inc) built for one instruction set; CMake sets
// this file's target flags. The dispatcher in flash_attention_cpu.cpp picks the copy to run.
#define EXATRAIN_FA_ISA generic
#include "kernels/flash_attention_cpu.inc"
