// Direct convolution, for layers whose every output sums few products (depthwise: one input
// channel per group; small kernels on few channels), where a patch matrix would cost more memory
// passes than the arithmetic (xpconv/_cuda/direct.py launches these).  Any groups, stride,
// dilation and padding.  Layouts: x, grad_x (N, C, input pixels); w (O, Cg, K); y, grad_y
// (N, O, P); channels grouped as C = G·Cg, O = G·Og, output o in group o / Og.

// y[b][o][p] = bias[o] + Σ over the group's input channels c' and taps k of
// x[b][group·Cg + c'][the pixel tap k of p reads] · w[o][c'][k], the padding contributing nothing.
extern "C" __global__ void direct_forward(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w,
                                          const scalar_t* __restrict__ bias, scalar_t* __restrict__ y, Geometry g) {
    const long long pixels = volume(g.dims, g.out), taps = volume(g.dims, g.kernel);
    const long long plane = volume(g.dims, g.size);
    const long long cg = g.c / g.groups, og = g.o / g.groups;
    const long long total = g.n * g.o * pixels;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (b, o, p)
        const long long p = i % pixels, o = i / pixels % g.o, b = i / (pixels * g.o);
        const long long first_channel = o / og * cg;
        int out_coord[XPCONV_MAX_DIMS];
        unravel(p, g.dims, g.out, out_coord);
        acc_t sum = bias == nullptr ? acc_t(0) : to_acc(bias[o]);
        for_each_source(g, out_coord, [&](long long k, long long at) {
            for (long long c = 0; c < cg; ++c)
                sum += to_acc(x[(b * g.c + first_channel + c) * plane + at]) * to_acc(w[(o * cg + c) * taps + k]);
        });
        y[i] = to_scalar(sum);
    }
}

// grad_x[b][c][x] = bias[c] (when given: a transposed convolution's) + Σ over the outputs o of
// c's group and the taps k with which some output pixel p reads x, of grad_y[b][o][p] · w[o][c'][k]
// (c' = c's place in its group).
extern "C" __global__ void direct_input_gradient(const scalar_t* __restrict__ grad_y, const scalar_t* __restrict__ w,
                                                 const scalar_t* __restrict__ bias, scalar_t* __restrict__ grad_x,
                                                 Geometry g) {
    const long long pixels = volume(g.dims, g.out), taps = volume(g.dims, g.kernel);
    const long long plane = volume(g.dims, g.size);
    const long long cg = g.c / g.groups, og = g.o / g.groups;
    const long long total = g.n * g.c * plane;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (b, c, x)
        const long long x = i % plane, c = i / plane % g.c, b = i / (plane * g.c);
        const long long first_output = c / cg * og, within = c % cg;
        int in_coord[XPCONV_MAX_DIMS];
        unravel(x, g.dims, g.size, in_coord);
        acc_t sum = bias == nullptr ? acc_t(0) : to_acc(bias[c]);
        for_each_reader(g, in_coord, [&](long long k, long long p) {
            for (long long o = first_output; o < first_output + og; ++o)
                sum += to_acc(grad_y[(b * g.o + o) * pixels + p]) * to_acc(w[(o * cg + within) * taps + k]);
        });
        grad_x[i] = to_scalar(sum);
    }
}

// The weight and bias gradients in two launches, a deterministic two-stage sum (no atomics).
// Each output channel o has Cg·K weights and a bias: Cg·K + 1 "slots", slot Cg·K its bias.  The
// range of (image, output pixel) pairs, N·P long, is cut into `segments` equal parts; stage one
// writes, per slot and segment, the sum over the segment (in order) of
//     grad_y[b][o][p] · x[b][channel of c'][the pixel tap k of p reads]   for slot c'·K + k,
//     grad_y[b][o][p]                                                      for the bias slot,
// laid out partials[o][slot][segment]; stage two sums each slot's partials in segment order.
extern "C" __global__ void direct_weight_partials(const scalar_t* __restrict__ grad_y, const scalar_t* __restrict__ x,
                                                  acc_t* __restrict__ partials, Geometry g, long long segments) {
    const long long pixels = volume(g.dims, g.out), taps = volume(g.dims, g.kernel);
    const long long plane = volume(g.dims, g.size);
    const long long cg = g.c / g.groups, og = g.o / g.groups;
    const long long slots = cg * taps + 1, length = g.n * pixels;
    const long long total = g.o * slots * segments;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (o, slot, segment)
        const long long segment = i % segments, slot = i / segments % slots, o = i / (segments * slots);
        const long long channel = o / og * cg + slot / taps, k = slot % taps;
        const long long begin = length * segment / segments, end = length * (segment + 1) / segments;
        int out_coord[XPCONV_MAX_DIMS], in_coord[XPCONV_MAX_DIMS];
        acc_t sum = 0;
        for (long long j = begin; j < end; ++j) {
            // j -> (b, p)
            const long long b = j / pixels, p = j % pixels;
            const acc_t dy = to_acc(grad_y[(b * g.o + o) * pixels + p]);
            if (slot == slots - 1) {
                sum += dy;
                continue;
            }
            unravel(p, g.dims, g.out, out_coord);
            if (tap_source(g, out_coord, k, in_coord))
                sum += dy * to_acc(x[(b * g.c + channel) * plane + ravel(g.dims, g.size, in_coord)]);
        }
        partials[i] = sum;
    }
}

// Stage two: grad_w[o][c'][k] and, when grad_b is given, grad_b[o]: each slot's partials summed
// in segment order.
extern "C" __global__ void direct_weight_sum(const acc_t* __restrict__ partials, scalar_t* __restrict__ grad_w,
                                             scalar_t* __restrict__ grad_b, Geometry g, long long segments) {
    const long long taps = volume(g.dims, g.kernel), cg = g.c / g.groups;
    const long long slots = cg * taps + 1;
    const long long total = g.o * slots;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (o, slot)
        const long long slot = i % slots, o = i / slots;
        acc_t sum = 0;
        for (long long s = 0; s < segments; ++s) sum += partials[i * segments + s];
        if (slot < slots - 1)
            grad_w[o * (slots - 1) + slot] = to_scalar(sum);
        else if (grad_b != nullptr)
            grad_b[o] = to_scalar(sum);
    }
}
