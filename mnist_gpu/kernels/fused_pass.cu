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
// One warp rather than a larger block: the 60,000 steps are strictly sequential and carry
// about 150 lit pixels each, so a warp-synchronous step (no __syncthreads, no shared-memory
// reduction) is the shortest critical path. Compiled by CuPy (NVRTC) at run time; the test
// suite also compiles it with nvcc.

#define N_PIXELS 784
#define N_OUT 10
#define WARP 32
#define FULL_MASK 0xffffffffu

template <typename T>
__device__ void per_image_pass(T* __restrict__ weights,
                               const long long* __restrict__ indptr,
                               const int* __restrict__ indices,
                               const T* __restrict__ values,
                               const unsigned char* __restrict__ labels,
                               const long long* __restrict__ order,
                               const int use_order,
                               const T alpha,
                               const long long start,
                               const long long stop) {
    // 16-byte aligned so that the weights may be read as float4/double2 without a misaligned
    // access, whatever the compiler places first.
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    T* W = reinterpret_cast<T*>(shared_bytes);
    const int lane = threadIdx.x;

    for (int e = lane; e < N_PIXELS * N_OUT; e += WARP) W[e] = weights[e];
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
            const T* w = W + indices[t] * N_OUT;
#pragma unroll
            for (int j = 0; j < N_OUT; ++j) delta[j] += x * w[j];
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
            T* w = W + indices[t] * N_OUT;
#pragma unroll
            for (int j = 0; j < N_OUT; ++j) w[j] -= alpha * (x * delta[j]);
        }
        // The next image may read rows that other lanes have just written.
        __syncwarp();
    }

    for (int e = lane; e < N_PIXELS * N_OUT; e += WARP) weights[e] = W[e];
}

extern "C" __global__ void per_image_pass_float32(
        float* weights, const long long* indptr, const int* indices, const float* values,
        const unsigned char* labels, const long long* order, int use_order, float alpha,
        long long start, long long stop) {
    per_image_pass<float>(weights, indptr, indices, values, labels, order, use_order, alpha,
                          start, stop);
}

extern "C" __global__ void per_image_pass_float64(
        double* weights, const long long* indptr, const int* indices, const double* values,
        const unsigned char* labels, const long long* order, int use_order, double alpha,
        long long start, long long stop) {
    per_image_pass<double>(weights, indptr, indices, values, labels, order, use_order, alpha,
                           start, stop);
}
