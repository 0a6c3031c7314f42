/* pack.c -- packing operands into panels: see pack.h for the layout. */
#include "pack.h"

#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "pool.h"
#include "simd.h"
#include "tiles.h"

/* Column of the operand (Wh, Wh.T or a matrix) that lane l of panel p holds, or -1 for
 * padding; `units` as fc_packed's. */
static int panel_column(int kind, int units, int p, int l)
{
    int u;
    if (kind == FC_PACK_GATES) {
        u = p * FC_VW + l % FC_VW;
        return u < units ? (l / FC_VW) * units + u : -1;
    }
    u = p * FC_PW + l;
    return u < units ? u : -1;
}

typedef struct {
    fc_packed *out;
    const float *W;
    ptrdiff_t rs, cs; /* element (k, col) of the matrix packed: W[k * rs + col * cs] */
} pack_job;

/* bf16 panels: pair row kp of lane l holds (k = 2kp, 2kp+1) of its column, k
 * even in the low half; a k or a column past the matrix is 0. The loop order
 * follows the source's contiguous direction: along a row of W (cs == 1) or
 * along a column (a transposed source). */
static inline uint32_t bf16_pair(const pack_job *job, int k, int col)
{
    return fc_bf16_pair(job->W + (ptrdiff_t)col * job->cs + (ptrdiff_t)k * job->rs, job->rs, k,
                        job->out->K);
}

static void pack_bf16_panel(const pack_job *job, int p)
{
    const fc_packed *o = job->out;
    uint32_t *panel = (uint32_t *)o->data + (size_t)p * o->krows * FC_PW;
    int cols[FC_PW];
    for (int l = 0; l < FC_PW; l++) cols[l] = panel_column(o->kind, o->units, p, l);
    if (job->cs == 1) {
        /* rows 2kp and 2kp+1 of W, a vector of lanes at a time where its columns run on */
        for (int kp = 0; kp < o->krows; kp++) {
            uint32_t *dst = panel + (size_t)kp * FC_PW;
            const float *r0 = job->W + (ptrdiff_t)(2 * kp) * job->rs;
            for (int v = 0; v < 4; v++) {
                const int c = cols[v * FC_VW], last = cols[v * FC_VW + FC_VW - 1];
                if (c >= 0 && last == c + FC_VW - 1 && 2 * kp + 1 < o->K) {
                    vu lo = vu_bf16_bits(vf_load(r0 + c)), hi = vu_bf16_bits(vf_load(r0 + job->rs + c));
                    vu pair = lo | hi << 16;
                    memcpy(dst + v * FC_VW, &pair, sizeof pair);
                } else {
                    for (int l = v * FC_VW; l < (v + 1) * FC_VW; l++)
                        dst[l] = cols[l] < 0 ? 0 : bf16_pair(job, 2 * kp, cols[l]);
                }
            }
        }
    } else if (job->rs == 1) {
        /* a column of W (a row of W.T) is contiguous: its pairs in one run, then scattered
         * down the panel's lane l */
        uint32_t run[512];
        for (int l = 0; l < FC_PW; l++) {
            for (int kp0 = 0; kp0 < o->krows; kp0 += 512) {
                const int np = o->krows - kp0 < 512 ? o->krows - kp0 : 512;
                if (cols[l] < 0) {
                    memset(run, 0, sizeof run);
                } else {
                    const int k0 = 2 * kp0, nk = o->K - k0 < 2 * np ? o->K - k0 : 2 * np;
                    fc_bf16_pairs(job->W + (ptrdiff_t)cols[l] * job->cs + k0, nk, run);
                }
                for (int j = 0; j < np; j++) panel[(size_t)(kp0 + j) * FC_PW + l] = run[j];
            }
        }
    } else {
        for (int l = 0; l < FC_PW; l++)
            for (int kp = 0; kp < o->krows; kp++)
                panel[(size_t)kp * FC_PW + l] = cols[l] < 0 ? 0 : bf16_pair(job, 2 * kp, cols[l]);
    }
}

/* Panels split over the threads. Loop orders read Wh along its rows:
 * forward panels gather FC_VW-long runs of a row of Wh, transposed panels
 * read a whole row of Wh (one column of Wh.T, rs == 1) per lane. */
static void pack_task(void *ctx, int tid, int nth)
{
    const pack_job *job = ctx;
    const fc_packed *o = job->out;
    const int K = o->K, units = o->units;
    int p0, p1;
    fc_thread_panels(o->npanels, tid, nth, &p0, &p1);
    for (int p = p0; p < p1; p++) {
        float *panel = o->data + (size_t)p * K * FC_PW;
        if (o->bf16) {
            pack_bf16_panel(job, p);
        } else if (o->kind == FC_PACK_TRANSPOSED) {
            /* blocks of 16 k: 16 consecutive floats of each lane's row of Wh
             * go to a 16 x FC_PW block of the panel that stays in L1 */
            for (int k0 = 0; k0 < K; k0 += 16) {
                const int kn = K - k0 < 16 ? K - k0 : 16;
                for (int l = 0; l < FC_PW; l++) {
                    int col = panel_column(o->kind, units, p, l);
                    const float *row = col < 0 ? NULL : job->W + (ptrdiff_t)col * job->cs + k0;
                    float *dst = panel + (size_t)k0 * FC_PW + l;
                    for (int k = 0; k < kn; k++) dst[(size_t)k * FC_PW] = row ? row[k] : 0.0f;
                }
            }
        } else {
            /* a full panel is runs of FC_VW consecutive columns (FC_PW for PLAIN) of a row
             * of W (cs == 1) */
            const int full = o->kind == FC_PACK_GATES ? (p + 1) * FC_VW <= units : (p + 1) * FC_PW <= units;
            for (int k = 0; k < K; k++) {
                const float *row = job->W + (ptrdiff_t)k * job->rs;
                float *dst = panel + (size_t)k * FC_PW;
                if (full && o->kind == FC_PACK_GATES) {
                    for (int g = 0; g < 4; g++)
                        memcpy(dst + g * FC_VW, row + g * units + p * FC_VW, FC_VW * sizeof(float));
                } else if (full) {
                    memcpy(dst, row + p * FC_PW, FC_PW * sizeof(float));
                } else {
                    for (int l = 0; l < FC_PW; l++) {
                        int col = panel_column(o->kind, units, p, l);
                        dst[l] = col < 0 ? 0.0f : row[col];
                    }
                }
            }
        }
    }
}

/* Pack the (K, cols) operand W[k * rs + col * cs] into panels of `kind` over `units`. */
static int pack(fc_packed *out, const float *W, ptrdiff_t rs, ptrdiff_t cs, int K, int cols,
                int units, int kind, int bf16, int nthreads)
{
    int npanels = kind == FC_PACK_GATES ? (units + FC_VW - 1) / FC_VW : (units + FC_PW - 1) / FC_PW;
    int krows = bf16 ? (K + 1) / 2 : K;
    size_t bytes = (size_t)npanels * (size_t)krows * FC_PW * sizeof(float);
    void *data = NULL;
    out->data = NULL;
    if (posix_memalign(&data, 64, bytes ? bytes : 64) != 0) return -1;
    out->data = data;
    out->kind = kind;
    out->K = K;
    out->cols = cols;
    out->units = units;
    out->krows = krows;
    out->bf16 = bf16;
    out->npanels = npanels;
    pack_job job = {out, W, rs, cs};
    fc_pool_run(pack_task, &job, nthreads);
    return 0;
}

int fc_pack(fc_packed *out, const float *Wh, int H, int G, int kind, int bf16, int nthreads)
{
    /* Wh.T (G, H): element (k, col) = Wh[col, k] */
    if (kind == FC_PACK_TRANSPOSED) return pack(out, Wh, 1, G, G, H, H, kind, bf16, nthreads);
    return pack(out, Wh, G, 1, H, G, H, kind, bf16, nthreads);
}

int fc_pack_cell(fc_packed *out, const float *W, int K, int H, int G, int kind, int bf16,
                 int nthreads)
{
    return pack(out, W, G, 1, K, G, H, kind, bf16, nthreads);
}

int fc_pack_matrix_bf16(fc_packed *out, const float *B, ptrdiff_t rs, ptrdiff_t cs, int K, int N,
                        int nthreads)
{
    return pack(out, B, rs, cs, K, N, N, FC_PACK_PLAIN, 1, nthreads);
}

int fc_pack_matrix_f32(fc_packed *out, const float *B, int K, int N, int nthreads)
{
    /* float32 panels read B row by row, N floats apart (pack_task's float32 branch) */
    return pack(out, B, N, 1, K, N, N, FC_PACK_PLAIN, 0, nthreads);
}

void fc_packed_free(fc_packed *p)
{
    free(p->data);
    p->data = NULL;
}
