// The tutorial's per-image training pass in one launch: one warp holds the 784x10 weights in
// shared memory and walks the images in order. For each image it
//   1. computes pred = x @ W over the image's lit pixels (each lane takes every 32nd one),
//   2. sums the ten partial dot products across the warp (butterfly shuffles, so every lane
//      ends with all ten), and subtracts the one-hot label: delta = pred - onehot,
//   3. updates the lit pixels' rows, W[k, :] -= alpha * (x[k] * delta); the rows of one image
//      are distinct, so the lanes never write the same row,
// and writes the weights back once at the end. The images arrive as CSR lists of lit pixels
// (indptr, indices, values), since a zero pixel neither contributes nor changes its row.
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
// (fused_cuda.launch_plan); the summation order, and so every result, does not depend on it.
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

    for (long long position = start; position < stop; ++position) {
        const long long i = use_order ? order[position] : position;
        const long long first = indptr[i];
        const long long last = indptr[i + 1];

        T delta[N_OUT];
#pragma unroll
        for (int j = 0; j < N_OUT; ++j) delta[j] = T(0);
        for (long long t = first + lane; t < last; t += WARP) {
            const T x = values[t];
            const int r = indices[t];
            if (r < shared_rows)
                add_row(delta, x, W + r * N_OUT);
            else
                add_row(delta, x, global_row(r));
        }
        const int label = labels[i];
#pragma unroll
        for (int j = 0; j < N_OUT; ++j) {
#pragma unroll
            for (int offset = WARP / 2; offset > 0; offset /= 2)
                delta[j] += __shfl_xor_sync(FULL_MASK, delta[j], offset);
            delta[j] -= (j == label) ? T(1) : T(0);
        }

        for (long long t = first + lane; t < last; t += WARP) {
            const T x = values[t];
            const int r = indices[t];
            if (r < shared_rows)
                sub_row(W + r * N_OUT, alpha, x, delta);
            else
                sub_row(global_row(r), alpha, x, delta);
        }
        // The next image may read rows that other lanes have just written.
        __syncwarp();
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
