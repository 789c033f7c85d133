// Just enough of CUDA to run the project's kernels on the CPU, one warp at a time, for the tests
// of machines without a GPU. Each block's 32 lanes are 32 threads that meet at a barrier wherever
// a warp synchronises (__syncwarp, and on both sides of a shuffle), so a kernel that forgets a
// synchronisation or lets two lanes write one row can go wrong here too; the blocks of a grid run
// one after another, sharing one shared-memory buffer.
//
// Compiled with -ffp-contract=off, as the kernels are with --fmad=false: every multiply and add
// rounded on its own, so that the emulation's float and double results are those of the GPU.
#pragma once

#include <barrier>
#include <cstddef>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

struct EmulatedIndex {
    unsigned x = 0, y = 0, z = 0;
};
thread_local EmulatedIndex threadIdx, blockIdx;
EmulatedIndex blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

constexpr std::size_t EMULATED_SHARED_BYTES = 256 * 1024;
alignas(16) unsigned char shared_bytes[EMULATED_SHARED_BYTES];

namespace emulation {
constexpr unsigned WARP_SIZE = 32;
std::barrier<>* warp_barrier = nullptr;
double exchange[WARP_SIZE];  // a float or a double per lane: both round-trip exactly
}  // namespace emulation

inline void __syncwarp(unsigned = 0xffffffffu) { emulation::warp_barrier->arrive_and_wait(); }

template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask) {
    emulation::exchange[threadIdx.x] = static_cast<double>(value);
    emulation::warp_barrier->arrive_and_wait();
    const T other = static_cast<T>(emulation::exchange[threadIdx.x ^ lane_mask]);
    emulation::warp_barrier->arrive_and_wait();  // nobody overwrites a value before it is read
    return other;
}

namespace emulation {
// kernel<<<grid, block, shared>>>(args...) with the arguments given as cudaLaunchKernel takes
// them: an array of pointers, one to each argument's value.
template <typename... Args, std::size_t... I>
void launch(void (*kernel)(Args...), unsigned grid, unsigned block, std::size_t shared,
            void** args, std::index_sequence<I...>) {
    if (block != WARP_SIZE) throw std::invalid_argument("the emulation runs blocks of one warp");
    if (shared > EMULATED_SHARED_BYTES) throw std::invalid_argument("too much shared memory");
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b) {
        std::barrier<> barrier(block);
        warp_barrier = &barrier;
        std::vector<std::thread> lanes;
        for (unsigned lane = 0; lane < block; ++lane)
            lanes.emplace_back([=] {
                threadIdx.x = lane;
                blockIdx.x = b;
                kernel(*static_cast<std::remove_reference_t<Args>*>(args[I])...);
            });
        for (auto& lane : lanes) lane.join();
    }
}
}  // namespace emulation

// An exported launcher per kernel: emulate_NAME(grid, block, shared_bytes, args).
#define EMULATE(name)                                                                         \
    extern "C" int emulate_##name(unsigned grid, unsigned block, std::size_t shared,          \
                                  void** args) {                                              \
        try {                                                                                 \
            emulation::launch(name, grid, block, shared, args,                                \
                              std::make_index_sequence<std::tuple_size_v<                     \
                                  decltype(emulation::arguments_of(name))>>{});               \
            return 0;                                                                         \
        } catch (const std::exception&) {                                                     \
            return 1;                                                                         \
        }                                                                                     \
    }

namespace emulation {
template <typename... Args>
std::tuple<Args...> arguments_of(void (*)(Args...));
}  // namespace emulation
