// The tutorial's per-image training pass in one launch: one warp holds the 784x10 weights in
// shared memory and walks the images in order. For each image it
//   1. computes pred = x @ W over the image's lit pixels (each lane takes every 32nd one),
//   2. sums the ten partial dot products across the warp (butterfly shuffles, so every lane
//      ends with all ten), and subtracts the one-hot label: delta = pred - onehot,
//   3. updates the lit pixels' rows, W[k, :] -= alpha * (x[k] * delta); the rows of one image
//      are distinct, so the lanes never write the same row,
// and writes the weights back once at the end. The images arrive as CSR lists of lit pixels
// (indptr, indices, values), since a zero pixel neither contributes nor changes its row. Each
// lane's share of a list is loaded into registers one image ahead (a software pipeline, see the
// loop), so that a step waits on no load from global memory but those of the rare rows kept
// there (and of lists longer than the registers hold). 96 registers per lane in float32, 142 in
// float64 (ptxas, sm_90): 21 and 14 blocks per multiprocessor, more than shared memory allows.
//
// Several models side by side (a sweep): the weights are a (784, 10 M) matrix, model m in columns
// 10 m to 10 m + 9, each with its own rate alphas[m]. Block m (one warp) trains model m: it copies
// its columns into shared memory, walks the same images, and copies them back, so the blocks of
// a grid of hundreds of models spread over the GPU's multiprocessors and run at once. One model
// is the grid of one block.
//
// Rows by rank: the lists name each pixel by its rank in how often the training images light it
// (rank 0 the most often; pixel_of_rank maps back), and only the first shared_rows ranks live in
// shared memory; the rarer rows stay in the model's columns in global memory and are read and
// written there. One model keeps every lit row on chip, but a multiprocessor holds only as many
// blocks as its shared memory has room for: MNIST lights 717 pixels, whose float32 rows take
// 28 KiB (plus 1 KiB reserved per block), so an H200 would run 7 blocks per multiprocessor and
// 1,024 models in two waves, while the 704 most often lit rows (27.5 KiB; the 13 left out are lit
// in 11 of the 60,000 images) let 8 fit and all 1,024 run at once. The host picks shared_rows
// (cuda.py's launch_plan); the summation order, and so every result, does not depend on it.
//
// One warp rather than a larger block: the 60,000 steps are strictly sequential and carry
// about 150 lit pixels each, so a warp-synchronous step (no __syncthreads, no shared-memory
// reduction) is the shortest critical path. Compiled by CuPy (NVRTC) at run time; the test
// suite also compiles it with nvcc, and runs it on the CPU (tests/cuda_on_cpu).

#define N_OUT 10
#define WARP 32
#define FULL_MASK 0xffffffffu

// delta += x * w and w -= alpha * (x * delta) over one row's ten values, each multiply and add
// rounded on its own. Called with a shared-memory row or a global one in separate branches, so
// that the compiler knows which memory each access goes to.
template <typename T>
__device__ __forceinline__ void add_row(T (&delta)[N_OUT], const T x, const T* w) {
#pragma unroll
    for (int j = 0; j < N_OUT; ++j) delta[j] += x * w[j];
}

template <typename T>
__device__ __forceinline__ void sub_row(T* w, const T alpha, const T x, const T (&delta)[N_OUT]) {
#pragma unroll
    for (int j = 0; j < N_OUT; ++j) w[j] -= alpha * (x * delta[j]);
}

// Each lane's first CACHED entries (value, rank) of an image's list, held in registers: loaded
// one image ahead, read by the score and again by the update. 12 x 32 = 384 entries per image
// (MNIST lights at most 351 pixels of one); a longer list's other entries are read from memory
// where they are used.
#define CACHED 12

template <typename T>
struct Entries {
    T x[CACHED];
    int r[CACHED];
};

// An image's list, entries first to last - 1, and its label.
struct Image {
    long long first, last;
    int label;
};

template <typename T>
__device__ void per_image_pass(T* __restrict__ all_weights,
                               const long long row_stride,
                               const T* __restrict__ alphas,
                               const int* __restrict__ pixel_of_rank,
                               const int shared_rows,
                               const long long* __restrict__ indptr,
                               const int* __restrict__ indices,
                               const T* __restrict__ values,
                               const unsigned char* __restrict__ labels,
                               const long long* __restrict__ order,
                               const int use_order,
                               const long long start,
                               const long long stop) {
    // 16-byte aligned so that the weights may be read as float4/double2 without a misaligned
    // access, whatever the compiler places first.
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    T* W = reinterpret_cast<T*>(shared_bytes);
    const int lane = threadIdx.x;
    // This block's model: its ten columns, each row of the stack row_stride values apart.
    T* weights = all_weights + static_cast<long long>(blockIdx.x) * N_OUT;
    const T alpha = alphas[blockIdx.x];

    // The row of the pixel of rank r: W + r * N_OUT for the first shared_rows ranks, else its
    // place in the model's columns.
    auto global_row = [&](const int r) {
        return weights + static_cast<long long>(pixel_of_rank[r]) * row_stride;
    };
    for (int e = lane; e < shared_rows * N_OUT; e += WARP)
        W[e] = global_row(e / N_OUT)[e % N_OUT];
    __syncwarp();

    // The images as a software pipeline, so that the latency of their loads is spent on other
    // images' arithmetic rather than waited for: while image p is computed, the entries of p + 1,
    // the bounds and label of p + 2 and the image number of p + 3 are on their way (each needs
    // the one before it). Positions past the segment's end stand for its last image: loaded,
    // never used.
    auto image_at = [&](const long long position) {
        const long long p = position < stop ? position : stop - 1;
        return use_order ? order[p] : p;
    };
    auto image = [&](const long long i) { return Image{indptr[i], indptr[i + 1], labels[i]}; };
    auto load = [&](Entries<T>& entries, const Image& im) {
#pragma unroll
        for (int k = 0; k < CACHED; ++k) {
            const long long t = im.first + lane + k * WARP;
            entries.x[k] = t < im.last ? values[t] : T(0);
            entries.r[k] = t < im.last ? indices[t] : 0;
        }
    };
    Image now = image(image_at(start));
    Entries<T> entries;
    load(entries, now);
    Image soon = image(image_at(start + 1));
    long long later = image_at(start + 2);

    for (long long position = start; position < stop; ++position) {
        Entries<T> next_entries;
        load(next_entries, soon);
        const Image after = image(later);
        const long long latest = image_at(position + 3);

        // pred = x @ W: lane l sums its entries l, l + 32, ... in that order, the first CACHED
        // from registers, any more from memory.
        T delta[N_OUT];
#pragma unroll
        for (int j = 0; j < N_OUT; ++j) delta[j] = T(0);
        auto score = [&](const T x, const int r) {
            if (r < shared_rows)
                add_row(delta, x, W + r * N_OUT);
            else
                add_row(delta, x, global_row(r));
        };
#pragma unroll
        for (int k = 0; k < CACHED; ++k)
            if (now.first + lane + k * WARP < now.last) score(entries.x[k], entries.r[k]);
        for (long long t = now.first + lane + CACHED * WARP; t < now.last; t += WARP)
            score(values[t], indices[t]);
#pragma unroll
        for (int j = 0; j < N_OUT; ++j) {
#pragma unroll
            for (int offset = WARP / 2; offset > 0; offset /= 2)
                delta[j] += __shfl_xor_sync(FULL_MASK, delta[j], offset);
            delta[j] -= (j == now.label) ? T(1) : T(0);
        }

        // W -= alpha * outer(x, delta), over the same entries.
        auto descend = [&](const T x, const int r) {
            if (r < shared_rows)
                sub_row(W + r * N_OUT, alpha, x, delta);
            else
                sub_row(global_row(r), alpha, x, delta);
        };
#pragma unroll
        for (int k = 0; k < CACHED; ++k)
            if (now.first + lane + k * WARP < now.last) descend(entries.x[k], entries.r[k]);
        for (long long t = now.first + lane + CACHED * WARP; t < now.last; t += WARP)
            descend(values[t], indices[t]);
        // The next image may read rows that other lanes have just written.
        __syncwarp();

        now = soon;
        soon = after;
        later = latest;
        entries = next_entries;
    }

    for (int e = lane; e < shared_rows * N_OUT; e += WARP)
        global_row(e / N_OUT)[e % N_OUT] = W[e];
}

extern "C" __global__ void per_image_pass_float32(
        float* weights, long long row_stride, const float* alphas, const int* pixel_of_rank,
        int shared_rows, const long long* indptr, const int* indices, const float* values,
        const unsigned char* labels, const long long* order, int use_order, long long start,
        long long stop) {
    per_image_pass<float>(weights, row_stride, alphas, pixel_of_rank, shared_rows, indptr, indices,
                          values, labels, order, use_order, start, stop);
}

extern "C" __global__ void per_image_pass_float64(
        double* weights, long long row_stride, const double* alphas, const int* pixel_of_rank,
        int shared_rows, const long long* indptr, const int* indices, const double* values,
        const unsigned char* labels, const long long* order, int use_order, long long start,
        long long stop) {
    per_image_pass<double>(weights, row_stride, alphas, pixel_of_rank, shared_rows, indptr,
                           indices, values, labels, order, use_order, start, stop);
}
