// Max and average pooling, forward and backward, one launch each (xpconv/_cuda/pool.py launches
// these).  A pooling's windows are a depthwise convolution's taps, so Geometry describes them:
// g.c channels, g.kernel the window, g.pad the padding before (pooling pads both sides alike).
// Layouts: x, grad_x (N, C, input pixels); y, grad_y, indices (N, C, output pixels).

// The maximum of each window, NaN when it holds a NaN (into y, when given); and, when `indices` is given, where it
// is: the flat index, in the window's input plane, of the tap PyTorch picks.  Its rule: scan the
// window's taps inside the input in order, starting from the first; a value replaces the best
// when it is greater or NaN.  So the last NaN, else the first maximum; a window whose values are
// all −∞ keeps its first tap inside the input.  The padding is never picked.
extern "C" __global__ void max_pool(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                    long long* __restrict__ indices, Geometry g) {
    const long long pixels = volume(g.dims, g.out);
    const long long plane = volume(g.dims, g.size);
    const long long total = g.n * g.c * pixels;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (image·channel, p)
        const long long p = i % pixels, nc = i / pixels;
        int out_coord[XPCONV_MAX_DIMS];
        unravel(p, g.dims, g.out, out_coord);
        acc_t best = -infinity();
        long long where = -1;
        for_each_source(g, out_coord, [&](long long, long long at) {
            const acc_t value = to_acc(x[nc * plane + at]);
            if (where < 0 || value > best || isnan(value)) {
                best = value;
                where = at;
            }
        });
        if (y != nullptr) y[i] = to_scalar(best);
        if (indices != nullptr) indices[i] = where;
    }
}

// The gradient of max_pool through its indices: each input pixel sums, in tap order, the output
// gradient of every window that reads it and picked it.  Deterministic; no scatter.
extern "C" __global__ void max_pool_backward(const scalar_t* __restrict__ grad_y, const long long* __restrict__ indices,
                                             scalar_t* __restrict__ grad_x, Geometry g) {
    const long long pixels = volume(g.dims, g.out);
    const long long plane = volume(g.dims, g.size);
    const long long total = g.n * g.c * plane;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (image·channel, x)
        const long long x = i % plane, nc = i / plane;
        int in_coord[XPCONV_MAX_DIMS];
        unravel(x, g.dims, g.size, in_coord);
        acc_t sum = 0;
        for_each_reader(g, in_coord, [&](long long, long long p) {
            if (indices[nc * pixels + p] == x) sum += to_acc(grad_y[nc * pixels + p]);
        });
        grad_x[i] = to_scalar(sum);
    }
}

// What an average pooling window divides its sum by, PyTorch's rule: `divisor` when non-zero
// (divisor_override); else the window's size within the padded input (`count_include_pad`:
// the part of a ceil_mode window beyond the padding never counts), or within the input.
__device__ __forceinline__ acc_t window_divisor(const Geometry& g, const int* out_coord, int count_include_pad,
                                                int divisor) {
    if (divisor != 0) return (acc_t)divisor;
    long long padded = 1, inside = 1;
    for (int a = 0; a < g.dims; ++a) {
        const int start = out_coord[a] * g.stride[a] - g.pad[a];
        const int end = min(start + g.kernel[a], g.size[a] + g.pad[a]);
        padded *= end - start;
        inside *= min(end, g.size[a]) - max(start, 0);
    }
    return (acc_t)(count_include_pad ? padded : inside);
}

// The mean of each window: the sum of its taps inside the input (the padding is zero), in tap
// order, over window_divisor.
extern "C" __global__ void avg_pool(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, Geometry g,
                                    int count_include_pad, int divisor) {
    const long long pixels = volume(g.dims, g.out);
    const long long plane = volume(g.dims, g.size);
    const long long total = g.n * g.c * pixels;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (image·channel, p)
        const long long p = i % pixels, nc = i / pixels;
        int out_coord[XPCONV_MAX_DIMS];
        unravel(p, g.dims, g.out, out_coord);
        acc_t sum = 0;
        for_each_source(g, out_coord, [&](long long, long long at) { sum += to_acc(x[nc * plane + at]); });
        y[i] = to_scalar(sum / window_divisor(g, out_coord, count_include_pad, divisor));
    }
}

// The gradient of avg_pool: each input pixel sums, in tap order, every window's gradient that
// reads it, divided by that window's divisor.
extern "C" __global__ void avg_pool_backward(const scalar_t* __restrict__ grad_y, scalar_t* __restrict__ grad_x,
                                             Geometry g, int count_include_pad, int divisor) {
    const long long pixels = volume(g.dims, g.out);
    const long long plane = volume(g.dims, g.size);
    const long long total = g.n * g.c * plane;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (image·channel, x)
        const long long x = i % plane, nc = i / plane;
        int in_coord[XPCONV_MAX_DIMS], out_coord[XPCONV_MAX_DIMS];
        unravel(x, g.dims, g.size, in_coord);
        acc_t sum = 0;
        for_each_reader(g, in_coord, [&](long long, long long p) {
            unravel(p, g.dims, g.out, out_coord);
            sum += to_acc(grad_y[nc * pixels + p]) / window_divisor(g, out_coord, count_include_pad, divisor);
        });
        grad_x[i] = to_scalar(sum);
    }
}

// The partial inverse of max_pool: y (N, C, the pooling's input plane) zero but where an index of
// `indices` (N, C, the pooled plane) names a pixel: there the value of x at that index.  As a
// gather: each pixel of y looks at the windows that read it, in tap order, and takes the value
// of the first that names it — the last in raster order, as a sequential scatter would leave it.
extern "C" __global__ void max_unpool(const scalar_t* __restrict__ x, const long long* __restrict__ indices,
                                      scalar_t* __restrict__ y, Geometry g) {
    const long long pixels = volume(g.dims, g.out);
    const long long plane = volume(g.dims, g.size);
    const long long total = g.n * g.c * plane;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (image·channel, pixel)
        const long long pixel = i % plane, nc = i / plane;
        int coord[XPCONV_MAX_DIMS];
        unravel(pixel, g.dims, g.size, coord);
        bool found = false;
        acc_t value = 0;
        for_each_reader(g, coord, [&](long long, long long p) {
            if (!found && indices[nc * pixels + p] == pixel) {
                found = true;
                value = to_acc(x[nc * pixels + p]);
            }
        });
        y[i] = to_scalar(value);
    }
}
