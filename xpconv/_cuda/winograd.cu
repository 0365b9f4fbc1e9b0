// Winograd F(4×4, 3×3) on the GPU: each transform is one kernel that gathers its tiles itself,
// the padding folded in, and the products between them are batched GEMMs over all tiles
// (xpconv/_cuda/winograd.py launches these; xpconv/_winograd.py has the method and the matrices).
// 2-D only: Geometry's axes 0 and 1, a 3×3 kernel, stride 1, dilation 1.
//
// With a = 6 and m = 4, the tiles of an image are th × tw (whole tiles covering the output), T =
// th·tw of them, B = g.n the chunk's images (x, y point at the first), tile t = s·tw + u
// covering output rows 4s..4s+3 and columns 4u..4u+3 and reading input rows 4s − pad_top .. +5
// and columns 4u − pad_left .. +5.  The transforms, row-major in acc_t: bt = Bᵀ (a, a),
// at = Aᵀ (m, a), gm = G (a, 3).  A frequency ξ is (row, column) of the a × a transform, a·row + column.
#define WINO_A 6
#define WINO_M 4

__device__ __forceinline__ int tiles_along(const Geometry& g, int axis) { return (g.out[axis] + WINO_M - 1) / WINO_M; }

// The input tiles of the chunk, V = Bᵀ d B per channel and tile,
// zeros in the padding.  Laid out, with `channels_last` 0, v[ξ][c][b·T + t] (the forward's GEMM
// operand (a², C, B·T)); with `channels_last` 1, v[ξ][b·T + t][c] over C + 1 columns, the last one
// 1 at frequency `ones_at` and 0 elsewhere (the weight gradient's operand, whose product with it
// is the bias gradient: xpconv/_cuda/winograd.py).
extern "C" __global__ void winograd_input(const scalar_t* __restrict__ x, const acc_t* __restrict__ bt,
                                          acc_t* __restrict__ v, Geometry g, int channels_last, int ones_at) {
    const int tiles_w = tiles_along(g, 1);
    const long long tiles = (long long)tiles_along(g, 0) * tiles_w, plane = (long long)g.size[0] * g.size[1];
    const long long columns = g.n * tiles, total = g.c * columns;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (c, b·T + t)
        const long long column = i % columns, c = i / columns;
        const long long b = column / tiles, t = column % tiles;
        const int top = (int)(t / tiles_w) * WINO_M - g.pad[0], left = (int)(t % tiles_w) * WINO_M - g.pad[1];
        acc_t d[WINO_A][WINO_A], rows[WINO_A][WINO_A];
        for (int r = 0; r < WINO_A; ++r)
            for (int q = 0; q < WINO_A; ++q) {
                const int y = top + r, z = left + q;
                const bool inside = y >= 0 && y < g.size[0] && z >= 0 && z < g.size[1];
                d[r][q] = inside ? to_acc(x[(b * g.c + c) * plane + (long long)y * g.size[1] + z]) : acc_t(0);
            }
        for (int f = 0; f < WINO_A; ++f)  // rows = Bᵀ d
            for (int q = 0; q < WINO_A; ++q) {
                acc_t sum = 0;
                for (int r = 0; r < WINO_A; ++r) sum += bt[f * WINO_A + r] * d[r][q];
                rows[f][q] = sum;
            }
        for (int f = 0; f < WINO_A; ++f)  // V = (Bᵀ d) B
            for (int h = 0; h < WINO_A; ++h) {
                acc_t sum = 0;
                for (int q = 0; q < WINO_A; ++q) sum += rows[f][q] * bt[h * WINO_A + q];
                const long long xi = f * WINO_A + h;
                if (channels_last) {
                    v[(xi * columns + column) * (g.c + 1) + c] = sum;
                    if (c == 0) v[(xi * columns + column) * (g.c + 1) + g.c] = xi == ones_at ? acc_t(1) : acc_t(0);
                } else {
                    v[(xi * g.c + c) * columns + column] = sum;
                }
            }
    }
}

// The chunk's output: Y = Aᵀ M A per output channel and tile,
// plus bias[o] when given, written where the tile lies inside the output.  m[ξ][o][b·T + t].
extern "C" __global__ void winograd_output(const acc_t* __restrict__ m, const acc_t* __restrict__ at,
                                           const scalar_t* __restrict__ bias, scalar_t* __restrict__ y, Geometry g) {
    const int tiles_w = tiles_along(g, 1);
    const long long tiles = (long long)tiles_along(g, 0) * tiles_w, plane = (long long)g.out[0] * g.out[1];
    const long long columns = g.n * tiles, total = g.o * columns;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (b, o, t)
        const long long t = i % tiles, o = i / tiles % g.o, b = i / (tiles * g.o);
        const long long column = b * tiles + t;
        acc_t rows[WINO_M][WINO_A];
        for (int r = 0; r < WINO_M; ++r)  // rows = Aᵀ M
            for (int h = 0; h < WINO_A; ++h) {
                acc_t sum = 0;
                for (int f = 0; f < WINO_A; ++f) sum += at[r * WINO_A + f] * m[((f * WINO_A + h) * g.o + o) * columns + column];
                rows[r][h] = sum;
            }
        const acc_t shift = bias == nullptr ? acc_t(0) : to_acc(bias[o]);
        const int top = (int)(t / tiles_w) * WINO_M, left = (int)(t % tiles_w) * WINO_M;
        for (int r = 0; r < WINO_M && top + r < g.out[0]; ++r)
            for (int q = 0; q < WINO_M && left + q < g.out[1]; ++q) {
                acc_t sum = 0;  // (Aᵀ M) A
                for (int h = 0; h < WINO_A; ++h) sum += rows[r][h] * at[q * WINO_A + h];
                y[(b * g.o + o) * plane + (long long)(top + r) * g.out[1] + left + q] = to_scalar(sum + shift);
            }
    }
}

// The kernels' transforms U = G w Gᵀ: u[ξ][o][c] for w[o][c] (O, C, 3, 3); with `transposed`,
// u[ξ][c][o] of w[o][c] flipped in both axes, the transform of the input gradient's kernel
// (the flipped, transposed weight (C, O, 3, 3)).
extern "C" __global__ void winograd_filter(const scalar_t* __restrict__ w, const acc_t* __restrict__ gm,
                                           acc_t* __restrict__ u, Geometry g, int transposed) {
    const long long outputs = g.o, inputs = g.c, total = outputs * inputs;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (o, c)
        const long long o = i / inputs, c = i % inputs;
        acc_t k[3][3], rows[WINO_A][3];
        for (int r = 0; r < 3; ++r)
            for (int q = 0; q < 3; ++q)
                k[r][q] = transposed ? to_acc(w[i * 9 + (2 - r) * 3 + 2 - q]) : to_acc(w[i * 9 + r * 3 + q]);
        for (int f = 0; f < WINO_A; ++f)  // rows = G k
            for (int q = 0; q < 3; ++q) {
                acc_t sum = 0;
                for (int r = 0; r < 3; ++r) sum += gm[f * 3 + r] * k[r][q];
                rows[f][q] = sum;
            }
        for (int f = 0; f < WINO_A; ++f)  // U = (G k) Gᵀ
            for (int h = 0; h < WINO_A; ++h) {
                acc_t sum = 0;
                for (int q = 0; q < 3; ++q) sum += rows[f][q] * gm[h * 3 + q];
                const long long xi = f * WINO_A + h;
                u[transposed ? (xi * inputs + c) * outputs + o : (xi * outputs + o) * inputs + c] = sum;
            }
    }
}

// The adjoint of winograd_output for the weight gradient: dM = A dY Aᵀ per output channel and
// tile of grad_y (zero beyond the output), laid out dm[ξ][o][b·T + t].
extern "C" __global__ void winograd_output_adjoint(const scalar_t* __restrict__ grad_y, const acc_t* __restrict__ at,
                                                   acc_t* __restrict__ dm, Geometry g) {
    const int tiles_w = tiles_along(g, 1);
    const long long tiles = (long long)tiles_along(g, 0) * tiles_w, plane = (long long)g.out[0] * g.out[1];
    const long long columns = g.n * tiles, total = g.o * columns;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (o, b·T + t)
        const long long column = i % columns, o = i / columns;
        const long long b = column / tiles, t = column % tiles;
        const int top = (int)(t / tiles_w) * WINO_M, left = (int)(t % tiles_w) * WINO_M;
        acc_t dy[WINO_M][WINO_M], rows[WINO_A][WINO_M];
        for (int r = 0; r < WINO_M; ++r)
            for (int q = 0; q < WINO_M; ++q) {
                const bool inside = top + r < g.out[0] && left + q < g.out[1];
                dy[r][q] = inside ? to_acc(grad_y[(b * g.o + o) * plane + (long long)(top + r) * g.out[1] + left + q])
                                  : acc_t(0);
            }
        for (int f = 0; f < WINO_A; ++f)  // rows = A dY
            for (int q = 0; q < WINO_M; ++q) {
                acc_t sum = 0;
                for (int r = 0; r < WINO_M; ++r) sum += at[r * WINO_A + f] * dy[r][q];
                rows[f][q] = sum;
            }
        for (int f = 0; f < WINO_A; ++f)  // dM = (A dY) Aᵀ
            for (int h = 0; h < WINO_A; ++h) {
                acc_t sum = 0;
                for (int q = 0; q < WINO_M; ++q) sum += rows[f][q] * at[q * WINO_A + h];
                dm[((f * WINO_A + h) * g.o + o) * columns + column] = sum;
            }
    }
}

// The adjoint of winograd_filter: grad_w[o][c] = Gᵀ dU G from du[ξ][o][c] over C + 1 columns,
// and, when grad_b is given, grad_b[o] = du[ones_at][o][C] (the product with the ones column).
extern "C" __global__ void winograd_filter_adjoint(const acc_t* __restrict__ du, const acc_t* __restrict__ gm,
                                                   scalar_t* __restrict__ grad_w, scalar_t* __restrict__ grad_b,
                                                   Geometry g, int ones_at) {
    const long long outputs = g.o, inputs = g.c, columns = inputs + 1, total = outputs * columns;
    for (long long i = first_index(); i < total; i += index_step()) {
        // i -> (o, c), c == C the ones column
        const long long o = i / columns, c = i % columns;
        if (c == inputs) {
            if (grad_b != nullptr) grad_b[o] = to_scalar(du[((long long)ones_at * outputs + o) * columns + inputs]);
            continue;
        }
        acc_t rows[3][WINO_A];
        for (int r = 0; r < 3; ++r)  // rows = Gᵀ dU
            for (int h = 0; h < WINO_A; ++h) {
                acc_t sum = 0;
                for (int f = 0; f < WINO_A; ++f) sum += gm[f * 3 + r] * du[((f * WINO_A + h) * outputs + o) * columns + c];
                rows[r][h] = sum;
            }
        for (int r = 0; r < 3; ++r)  // (Gᵀ dU) G
            for (int q = 0; q < 3; ++q) {
                acc_t sum = 0;
                for (int h = 0; h < WINO_A; ++h) sum += rows[r][h] * gm[h * 3 + q];
                grad_w[(o * inputs + c) * 9 + r * 3 + q] = to_scalar(sum);
            }
    }
}
