// Reference quantiser for mpq's MPQGGUF tests and benchmarks: calls llama.cpp's own
// ggml-quants.c (compiled alone, as ggml-base compiles it) on float32 rows.
//
// Build (see bench/gguf_quantize_match.sh):
//   cc -O2 -DNDEBUG -std=gnu11 -I$GGML/include -I$GGML/src -I$GGML/src/ggml-cpu \
//      bench/gguf_ggml_reference.c $GGML/src/ggml-quants.c -lm -o gguf_ggml_reference
//
// -DNDEBUG as in llama.cpp release builds: ggml-quants.c asserts |fval| <= 4194303 in nearest_int,
// which importance weights of exactly 0 can violate (the result is then garbage, but deterministic).
//
// Usage:
//   gguf_ggml_reference quantize <type-id> <n_per_row> <input.f32> <imatrix.f32|-> <output.bin>
//   gguf_ggml_reference dequantize <type-id> <n_values> <input.bin> <output.f32>
// The type id is ggml's enum value (2 = q4_0 ... 30 = bf16). F16/BF16 use ggml's scalar conversions.
#include "ggml.h"
#include "ggml-quants.h"
#include "ggml-impl.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t block_size(int t) {
    switch (t) {
        case 0: case 1: case 30: return 1;
        case 2: case 3: case 6: case 7: case 8: case 20: return 32;
        default: return 256;
    }
}
static size_t type_size(int t) {
    switch (t) {
        case 0: return 4; case 1: case 30: return 2;
        case 2: return 18; case 3: return 20; case 6: return 22; case 7: return 24; case 8: return 34;
        case 10: return 84; case 11: return 110; case 12: return 144; case 13: return 176; case 14: return 210;
        case 20: return 18; case 23: return 136;
        default: fprintf(stderr, "unsupported type %d\n", t); exit(2);
    }
}

// Symbols ggml-quants.c needs from ggml.c.
size_t ggml_row_size(enum ggml_type type, int64_t ne) { return type_size((int) type) * ne / block_size((int) type); }
size_t ggml_type_size(enum ggml_type type) { return type_size((int) type); }
const char * ggml_type_name(enum ggml_type type) { (void) type; return "?"; }
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fprintf(stderr, "ggml_abort %s:%d %s\n", file, line, fmt);
    abort();
}

static void * read_all(const char * path, size_t * size) {
    FILE * f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    *size = (size_t) ftell(f);
    fseek(f, 0, SEEK_SET);
    void * p = malloc(*size ? *size : 1);
    if (fread(p, 1, *size, f) != *size) { perror(path); exit(1); }
    fclose(f);
    return p;
}

static void write_all(const char * path, const void * p, size_t size) {
    FILE * f = fopen(path, "wb");
    if (!f || fwrite(p, 1, size, f) != size) { perror(path); exit(1); }
    fclose(f);
}

int main(int argc, char ** argv) {
    if (argc < 6) { fprintf(stderr, "usage: see source\n"); return 2; }
    const int t = atoi(argv[2]);
    const int64_t n = atoll(argv[3]);
    size_t in_size;
    void * in = read_all(argv[4], &in_size);
    if (strcmp(argv[1], "quantize") == 0) {
        if (argc < 7) return 2;
        const float * x = in;
        const int64_t nrows = (int64_t) (in_size / sizeof(float)) / n;
        const float * qw = NULL;
        size_t qw_size = 0;
        if (strcmp(argv[5], "-") != 0) qw = read_all(argv[5], &qw_size);
        const size_t row = ggml_row_size((enum ggml_type) t, n);
        char * out = calloc((size_t) nrows, row);
        switch (t) {
            case 0: memcpy(out, x, nrows * n * 4); break;
            case 1: for (int64_t i = 0; i < nrows * n; ++i) ((ggml_fp16_t *) out)[i] = GGML_FP32_TO_FP16(x[i]); break;
            case 30: for (int64_t i = 0; i < nrows * n; ++i) ((ggml_bf16_t *) out)[i] = GGML_FP32_TO_BF16(x[i]); break;
            case 2: quantize_q4_0(x, out, nrows, n, qw); break;
            case 3: quantize_q4_1(x, out, nrows, n, qw); break;
            case 6: quantize_q5_0(x, out, nrows, n, qw); break;
            case 7: quantize_q5_1(x, out, nrows, n, qw); break;
            case 8: quantize_q8_0(x, out, nrows, n, qw); break;
            case 10: quantize_q2_K(x, out, nrows, n, qw); break;
            case 11: quantize_q3_K(x, out, nrows, n, qw); break;
            case 12: quantize_q4_K(x, out, nrows, n, qw); break;
            case 13: quantize_q5_K(x, out, nrows, n, qw); break;
            case 14: quantize_q6_K(x, out, nrows, n, qw); break;
            case 20: quantize_iq4_nl(x, out, nrows, n, qw); break;
            case 23: quantize_iq4_xs(x, out, nrows, n, qw); break;
            default: fprintf(stderr, "unsupported type %d\n", t); return 2;
        }
        write_all(argv[6], out, (size_t) nrows * row);
    } else {
        float * y = malloc((size_t) n * sizeof(float));
        switch (t) {
            case 0: memcpy(y, in, n * 4); break;
            case 1: for (int64_t i = 0; i < n; ++i) y[i] = GGML_FP16_TO_FP32(((ggml_fp16_t *) in)[i]); break;
            case 30: for (int64_t i = 0; i < n; ++i) y[i] = GGML_BF16_TO_FP32(((ggml_bf16_t *) in)[i]); break;
            case 2: dequantize_row_q4_0(in, y, n); break;
            case 3: dequantize_row_q4_1(in, y, n); break;
            case 6: dequantize_row_q5_0(in, y, n); break;
            case 7: dequantize_row_q5_1(in, y, n); break;
            case 8: dequantize_row_q8_0(in, y, n); break;
            case 10: dequantize_row_q2_K(in, y, n); break;
            case 11: dequantize_row_q3_K(in, y, n); break;
            case 12: dequantize_row_q4_K(in, y, n); break;
            case 13: dequantize_row_q5_K(in, y, n); break;
            case 14: dequantize_row_q6_K(in, y, n); break;
            case 20: dequantize_row_iq4_nl(in, y, n); break;
            case 23: dequantize_row_iq4_xs(in, y, n); break;
            default: fprintf(stderr, "unsupported type %d\n", t); return 2;
        }
        write_all(argv[5], y, (size_t) n * sizeof(float));
    }
    return 0;
}
