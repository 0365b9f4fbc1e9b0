// Runs xpconv's CUDA C kernels on the CPU, for the tests: the system C++ compiler builds a
// kernel's very source with this header forced in front of it (g++ -include cuda_host.h).
//
// A launch of a grid of blocks of threads becomes loops: every block, and in it every thread, in
// order, each calling the kernel with blockIdx and threadIdx set, as cuLaunchKernel would start
// them.  That is faithful only for kernels whose threads never wait for or talk to one another,
// which is xpconv's rule for its kernels: no __shared__ memory, no __syncthreads, no atomics.  None
// of them is defined here, so a kernel that uses one does not compile.
//
// Kernel arguments arrive as cuLaunchKernel takes them: an array of pointers, one to each
// argument's bytes.  The probe functions report each parameter's C type (pointer or value, const,
// kind, size) so that the stand-in can check every launch's arguments as the GPU would read them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// One launch at a time per thread of the host; each simulated GPU thread sees its own indices.
static thread_local dim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

using std::isinf;
using std::isnan;

// __half: IEEE binary16 storage; conversions round to nearest even, as cuda_fp16.h's.
struct __half {
    _Float16 value;
};
inline float __half2float(__half h) { return static_cast<float>(h.value); }
inline __half __float2half(float f) { return __half{static_cast<_Float16>(f)}; }

// --- what the stand-in asks of a compiled kernel -----------------------------------------------

struct XpconvParam {
    int pointer;   // 1: a pointer to device memory
    int constant;  // 1: a pointer to const (the kernel only reads through it)
    char kind;     // of the value or the pointee: 'f' floating, 'i' signed, 'u' unsigned, 'b' bool, 'V' struct
    int size;      // bytes of the value or the pointee
};

template <class T>
constexpr char xpconv_kind() {
    if constexpr (std::is_same_v<T, bool>) return 'b';
    else if constexpr (std::is_same_v<T, __half> || std::is_floating_point_v<T>) return 'f';
    else if constexpr (std::is_integral_v<T>) return std::is_signed_v<T> ? 'i' : 'u';
    else return 'V';
}

template <class P>
XpconvParam xpconv_param() {
    if constexpr (std::is_pointer_v<P>) {
        using T = std::remove_pointer_t<P>;
        using V = std::remove_const_t<T>;
        return {1, std::is_const_v<T> ? 1 : 0, xpconv_kind<V>(), static_cast<int>(sizeof(V))};
    } else {
        return {0, 0, xpconv_kind<P>(), static_cast<int>(sizeof(P))};
    }
}

template <class... P>
int xpconv_describe(void (*)(P...), XpconvParam* out) {
    int i = 0;
    ((out[i++] = xpconv_param<P>()), ...);
    return static_cast<int>(sizeof...(P));
}

// Every block and every thread of the launch, in order; the arguments are copied out of their
// bytes once (as the GPU copies them into its parameter space) and passed to every thread.
template <class... P, std::size_t... I>
void xpconv_run(void (*kernel)(P...), const unsigned* grid, const unsigned* block, void** args,
                std::index_sequence<I...>) {
    std::tuple<std::remove_cv_t<P>...> values;
    ((std::memcpy(&std::get<I>(values), args[I], sizeof(P))), ...);
    gridDim = dim3{grid[0], grid[1], grid[2]};
    blockDim = dim3{block[0], block[1], block[2]};
    for (unsigned bz = 0; bz < grid[2]; ++bz)
        for (unsigned by = 0; by < grid[1]; ++by)
            for (unsigned bx = 0; bx < grid[0]; ++bx)
                for (unsigned tz = 0; tz < block[2]; ++tz)
                    for (unsigned ty = 0; ty < block[1]; ++ty)
                        for (unsigned tx = 0; tx < block[0]; ++tx) {
                            blockIdx = dim3{bx, by, bz};
                            threadIdx = dim3{tx, ty, tz};
                            kernel(std::get<I>(values)...);
                        }
}

template <class... P>
void xpconv_launch(void (*kernel)(P...), const unsigned* grid, const unsigned* block, void** args) {
    xpconv_run(kernel, grid, block, args, std::index_sequence_for<P...>{});
}

// --- the CUDA device functions xpconv's kernels use that C++ lacks ------------------------------

using std::max;
using std::min;

inline float __int_as_float(int bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}
inline double __longlong_as_double(long long bits) {
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
}
