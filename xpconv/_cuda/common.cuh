// What every xpconv kernel module shares: the geometry of one convolution or pooling, the
// compute types of one compilation, the grid-stride loop and the per-axis index arithmetic.
//
// Each module is compiled once per dtype, after a preamble (xpconv/_cuda/__init__.py) that names
//   scalar_t  the arrays' element type: __half, float or double
//   acc_t     what sums are accumulated in: float for __half, else scalar_t
// converts between them with to_acc() and to_scalar(), and gives infinity() in acc_t.
//
// Kernels are written as the Python around them: one output element per loop step, its flat index
// split into coordinates with / and %, the input coordinate computed, the padding a bounds test.
// Flat indices are 64-bit (a tensor may hold more than 2^31 elements); per-axis coordinates are
// 32-bit.  No shared memory, no __syncthreads, no atomics: every output is one thread's sum over
// its inputs in a fixed order, so results repeat bit for bit, and the same source runs on the CPU
// in the tests.

#define XPCONV_MAX_DIMS 3

// The sizes of one convolution (or pooling, whose windows are a depthwise convolution's), per
// spatial axis up to three; axes at and beyond `dims` are unused.  `pad` is the padding before
// each axis: the padding after needs no field, since `out` says where the windows end.  Mirrored
// by xpconv._cuda.GEOMETRY (a NumPy structured dtype); the tests compare the two layouts.
struct Geometry {
    long long n;       // images
    long long c;       // input channels
    long long o;       // output channels
    long long groups;  // channel groups: C / groups input channels meet O / groups outputs
    int dims;          // spatial axes: 1, 2 or 3
    int size[XPCONV_MAX_DIMS];      // input size
    int kernel[XPCONV_MAX_DIMS];    // taps
    int out[XPCONV_MAX_DIMS];       // output size
    int stride[XPCONV_MAX_DIMS];
    int dilation[XPCONV_MAX_DIMS];
    int pad[XPCONV_MAX_DIMS];       // padding before
};
static_assert(sizeof(Geometry) == 112, "Geometry must match xpconv._cuda.GEOMETRY");  // offsets: tested on the CPU

__device__ __forceinline__ acc_t to_acc(acc_t v) { return v; }

// The grid-stride loop: `for (long long i = first_index(); i < n; i += index_step())` visits every
// i in [0, n) once, whatever the grid, so a launcher may cap the grid.
__device__ __forceinline__ long long first_index() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long index_step() { return (long long)blockDim.x * gridDim.x; }

// Elements in the spatial extent `size[0..dims)`.
__device__ __forceinline__ long long volume(int dims, const int* size) {
    long long v = 1;
    for (int a = 0; a < dims; ++a) v *= size[a];
    return v;
}

// Splits a flat row-major index over the extent `size[0..dims)` into `coord`.
__device__ __forceinline__ void unravel(long long i, int dims, const int* size, int* coord) {
    for (int a = dims - 1; a >= 0; --a) {
        coord[a] = (int)(i % size[a]);
        i /= size[a];
    }
}

// The flat row-major index of `coord` in the extent `size[0..dims)`.
__device__ __forceinline__ long long ravel(int dims, const int* size, const int* coord) {
    long long i = 0;
    for (int a = 0; a < dims; ++a) i = i * size[a] + coord[a];
    return i;
}

// Tap `tap` of output pixel `out_coord` reads input pixel `in_coord` (per axis
// p·stride + k·dilation − pad); returns whether that pixel is inside the input (else padding).
__device__ __forceinline__ bool tap_source(const Geometry& g, const int* out_coord, long long tap, int* in_coord) {
    int k[XPCONV_MAX_DIMS];
    unravel(tap, g.dims, g.kernel, k);
    bool inside = true;
    for (int a = 0; a < g.dims; ++a) {
        in_coord[a] = out_coord[a] * g.stride[a] + k[a] * g.dilation[a] - g.pad[a];
        inside = inside && in_coord[a] >= 0 && in_coord[a] < g.size[a];
    }
    return inside;
}

// The converse: the output pixel whose tap `tap` reads input pixel `in_coord`, if any (per axis,
// p = (x + pad − k·dilation) / stride must divide exactly and land inside the output).  A window
// reads a pixel with one tap at most.
__device__ __forceinline__ bool tap_reader(const Geometry& g, const int* in_coord, long long tap, int* out_coord) {
    int k[XPCONV_MAX_DIMS];
    unravel(tap, g.dims, g.kernel, k);
    for (int a = 0; a < g.dims; ++a) {
        const int t = in_coord[a] + g.pad[a] - k[a] * g.dilation[a];
        if (t < 0 || t % g.stride[a] != 0 || t / g.stride[a] >= g.out[a]) return false;
        out_coord[a] = t / g.stride[a];
    }
    return true;
}

// f(k, at) for every tap k of output pixel `out_coord` that reads inside the input, in tap
// order, `at` the flat index of the pixel it reads in its input plane (the padding is skipped).
template <class F>
__device__ __forceinline__ void for_each_source(const Geometry& g, const int* out_coord, F f) {
    const long long taps = volume(g.dims, g.kernel);
    int in_coord[XPCONV_MAX_DIMS];
    for (long long k = 0; k < taps; ++k)
        if (tap_source(g, out_coord, k, in_coord)) f(k, ravel(g.dims, g.size, in_coord));
}

// f(k, p) for every tap k with which some output pixel reads input pixel `in_coord`, in tap
// order, `p` the flat index of that output pixel: the windows that read it, each once.
template <class F>
__device__ __forceinline__ void for_each_reader(const Geometry& g, const int* in_coord, F f) {
    const long long taps = volume(g.dims, g.kernel);
    int out_coord[XPCONV_MAX_DIMS];
    for (long long k = 0; k < taps; ++k)
        if (tap_reader(g, in_coord, k, out_coord)) f(k, ravel(g.dims, g.out, out_coord));
}
