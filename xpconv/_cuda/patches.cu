// Patches for the folded GEMMs, and back (xpconv/_cuda/patches.py launches these).
//
// Layouts, with B = g.n the chunk's images, P the output pixels, K the taps, and channels grouped as
// C = G·Cg, O = G·Og (one group's rows are contiguous, so (C·K, B·P) is also (G, Cg·K, B·P)):
//   x, grad_x   (B, C, input pixels)    NCHW, as the caller holds them
//   cols        (C·K, B·P)              the patch matrix: rows (channel, tap), columns (image, pixel)
//   prod, go    (O, B·P)                a GEMM's product, or grad_y laid out to be one's operand
//   y, grad_y   (B, O, P)               NCHW

// The patch matrix of the chunk's g.n images (x points at the first), the padding folded in:
// cols[c·K + k][b·P + p] = x[b][c][the pixel tap k of output pixel p reads], or 0 in the padding.
extern "C" __global__ void im2col(const scalar_t* __restrict__ x, acc_t* __restrict__ cols, Geometry g) {
    const long long pixels = volume(g.dims, g.out), taps = volume(g.dims, g.kernel);
    const long long plane = volume(g.dims, g.size);
    const long long total = g.c * taps * g.n * pixels;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (c, k, b, p)
        const long long p = i % pixels, b = i / pixels % g.n, k = i / (pixels * g.n) % taps;
        const long long c = i / (pixels * g.n * taps);
        int out_coord[XPCONV_MAX_DIMS], in_coord[XPCONV_MAX_DIMS];
        unravel(p, g.dims, g.out, out_coord);
        acc_t value = 0;
        if (tap_source(g, out_coord, k, in_coord))
            value = to_acc(x[(b * g.c + c) * plane + ravel(g.dims, g.size, in_coord)]);
        cols[i] = value;
    }
}

// The adjoint of im2col, as a gather: every input pixel sums, in tap order, the entries of the
// patch gradient whose tap reads it, plus bias[c] when a bias is given (a transposed
// convolution's).  grad_x[b][c][x] = bias[c] + Σ_k cols[c·K + k][b·P + p] over the taps k that
// some output pixel p reads x with.  No index array, no zero slots; deterministic.
extern "C" __global__ void col2im(const acc_t* __restrict__ cols, const scalar_t* __restrict__ bias,
                                  scalar_t* __restrict__ grad_x, Geometry g) {
    const long long pixels = volume(g.dims, g.out), taps = volume(g.dims, g.kernel);
    const long long plane = volume(g.dims, g.size);
    const long long total = g.n * g.c * plane;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (b, c, x)
        const long long x = i % plane, c = i / plane % g.c, b = i / (plane * g.c);
        int in_coord[XPCONV_MAX_DIMS];
        unravel(x, g.dims, g.size, in_coord);
        acc_t sum = bias == nullptr ? acc_t(0) : to_acc(bias[c]);
        for_each_reader(g, in_coord, [&](long long k, long long p) { sum += cols[((c * taps + k) * g.n + b) * pixels + p]; });
        grad_x[i] = to_scalar(sum);
    }
}

// NCHW to a GEMM operand, in the compute type: out[o][b·P + p] = y[b][o][p].
extern "C" __global__ void to_channel_major(const scalar_t* __restrict__ y, acc_t* __restrict__ out, long long batch,
                                            long long channels, long long pixels) {
    const long long total = batch * channels * pixels;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (o, b, p)
        const long long p = i % pixels, b = i / pixels % batch, o = i / (pixels * batch);
        out[i] = to_acc(y[(b * channels + o) * pixels + p]);
    }
}

// A GEMM's product to NCHW, plus the bias when given: y[b][o][p] = prod[o][b·P + p] + bias[o].
extern "C" __global__ void from_channel_major(const acc_t* __restrict__ prod, const scalar_t* __restrict__ bias,
                                              scalar_t* __restrict__ y, long long batch, long long channels,
                                              long long pixels) {
    const long long total = batch * channels * pixels;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (b, o, p)
        const long long p = i % pixels, o = i / pixels % channels, b = i / (pixels * channels);
        acc_t value = prod[(o * batch + b) * pixels + p];
        if (bias != nullptr) value += to_acc(bias[o]);
        y[i] = to_scalar(value);
    }
}
